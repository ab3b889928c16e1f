// An independent EventSource client for the conformance tests: the npm package
// `eventsource` (a WHATWG-following implementation), driven from the command line.
//
//   node eventsource_client.mjs <url> <config-json>
//
// config: { "types": ["message", ...],   event types to listen for
//           "until": "end",               exit after an event of this type (optional)
//           "timeoutMs": 20000 }          give up after this long (exit code 3)
//
// Prints one JSON object per line, as things happen:
//   {"kind":"open","readyState":1}
//   {"kind":"event","type":"...","data":"...","lastEventId":"..."}
//   {"kind":"error","readyState":0|2,"code":<status or null>}
//   {"kind":"done","reason":"until"|"closed"|"timeout"}
// It exits 0 after an `until` event or when the source is CLOSED after an error.
import { EventSource } from 'eventsource';

const [url, configText] = process.argv.slice(2);
if (!url || !configText) {
  console.error('usage: node eventsource_client.mjs <url> <config-json>');
  process.exit(64);
}
const config = JSON.parse(configText);
const types = config.types ?? ['message'];
const timeoutMs = config.timeoutMs ?? 20000;

const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const es = new EventSource(url);

function finish(reason, code) {
  clearTimeout(timer);
  es.close();
  print({ kind: 'done', reason });
  // Let stdout drain before leaving.
  process.stdout.write('', () => process.exit(code));
}

const timer = setTimeout(() => finish('timeout', 3), timeoutMs);

es.addEventListener('open', () => print({ kind: 'open', readyState: es.readyState }));
es.addEventListener('error', (e) => {
  print({ kind: 'error', readyState: es.readyState, code: e.code ?? null });
  if (es.readyState === EventSource.CLOSED) finish('closed', 0);
});
for (const type of types) {
  es.addEventListener(type, (e) => {
    print({ kind: 'event', type: e.type, data: e.data, lastEventId: e.lastEventId });
    if (config.until !== undefined && e.type === config.until) finish('until', 0);
  });
}
