//! What the Redis backplane keeps in Redis, and the Lua scripts that change it.
//!
//! Keys, under a prefix `P` (several hubs can share one Redis):
//! - `P:meta`, a hash: `seq`, the hub-wide sequence (every publication takes the next
//!   number, recorded or not), and `epoch`, drawn by the first node when the hash is
//!   missing (a Redis that lost its data starts a new epoch, so old cursors are known as
//!   such).
//! - `P:room:<room>`, a stream per room with history; entry ids are `<seq>-1`, fields
//!   `f` (the encoded frame, id line included), `t` (ms, Redis's clock), `c` (the
//!   caller's id, or empty), `h` (the header the nodes got with it: its rooms, ...). It expires whole once its newest event is too old.
//! - `P:roommeta:<room>`, a hash: `bytes` (what the stream holds), `dropped` (the
//!   sequence number of the newest event dropped from it), `last` (of the newest event
//!   added): enough to tell whether a cursor's events were evicted.
//! - `P:id:<id>`: the sequence number of an event that brought its own id, for as long
//!   as the event may stay in any history (its rooms' longest age).
//! - `P:events`, the one PUB/SUB channel every node listens to: every publication, in
//!   sequence order.

use redis::Script;

/// Publish one event: number it, record it in the streams of its rooms with history
/// (trimming them by count, bytes and age), and hand it to every node, atomically.
///
/// KEYS: `P:meta`, `P:id:<own id>` (or any key when none), then per room with history
/// its stream and its meta hash. ARGV: the frame without its id line, the own id (or
/// empty), a fresh epoch (used if none exists), the number of rooms with history, the
/// header of the message to the nodes, the channel, then per room its event, byte and
/// age (ms) limits. Returns `{seq, id}`; an own id already in use is the error
/// `DUPLICATE`.
pub(super) fn publish() -> Script {
    Script::new(
        r#"
local meta, idkey = KEYS[1], KEYS[2]
local rest, own, fresh, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local header, channel = ARGV[5], ARGV[6]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = fresh
  redis.call('HSET', meta, 'epoch', epoch)
end
if n > 0 and own ~= '' and redis.call('EXISTS', idkey) == 1 then
  return redis.error_reply('DUPLICATE')
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local id = own
if n > 0 and own == '' then id = epoch .. '-' .. seq end
local frame = rest
if id ~= '' then frame = 'id: ' .. id .. '\n' .. rest end
if n > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local longest = 0
  for i = 1, n do
    local stream, rmeta = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
    local max_events = tonumber(ARGV[4 + 3 * i])
    local max_bytes = tonumber(ARGV[5 + 3 * i])
    local max_age = tonumber(ARGV[6 + 3 * i])
    if max_age > longest then longest = max_age end
    local len = redis.call('XLEN', stream)
    if len == 0 then
      -- The stream expired whole (its newest event grew too old) or never was: what the
      -- room had is gone, through its last event, and so are its bytes.
      local last = redis.call('HGET', rmeta, 'last')
      if last then redis.call('HSET', rmeta, 'dropped', last, 'bytes', 0) end
    end
    redis.call('XADD', stream, seq .. '-1', 'f', frame, 't', now, 'c', own, 'h', header)
    local bytes = redis.call('HINCRBY', rmeta, 'bytes', #frame)
    redis.call('HSET', rmeta, 'last', seq)
    len = len + 1
    while len > 0 do
      local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
      local f, ts = first[2][2], tonumber(first[2][4])
      local old = now - ts > max_age
      local over = len > max_events or (bytes > max_bytes and len > 1) or old
      if not over then break end
      redis.call('XDEL', stream, first[1])
      bytes = redis.call('HINCRBY', rmeta, 'bytes', -#f)
      redis.call('HSET', rmeta, 'dropped', string.match(first[1], '^(%d+)'))
      len = len - 1
      -- Entries are in time order: the next one is younger than this one. If this one
      -- went for the count or the bytes only, the next is not too old, and once those
      -- bounds are met there is nothing to look at (an XRANGE saved per publish).
      if not old and len <= max_events and not (bytes > max_bytes and len > 1) then break end
    end
    redis.call('PEXPIRE', stream, max_age)
    redis.call('PEXPIRE', rmeta, max_age + 86400000)
  end
  if own ~= '' then redis.call('SET', idkey, seq, 'PX', longest) end
end
redis.call('PUBLISH', channel, seq .. '\n' .. header .. '\n' .. frame)
return {seq, id}
"#,
    )
}

/// Read, at one instant, the sequence number of the newest publication and, per room,
/// what its history holds after a sequence number (or its newest events).
///
/// KEYS: per room its stream and its meta hash. ARGV: `after` (a sequence number) or,
/// with a second argument `newest`, how many of the newest events per room. Returns
/// `{seq, epoch, rooms...}` with, per room, `{dropped, last, exists, entries}` and each
/// entry `{seq, frame}`.
pub(super) fn fetch() -> Script {
    Script::new(
        r#"
local meta = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local out = { meta[1] or '0', meta[2] or '' }
local after, mode = ARGV[1], ARGV[2]
for i = 1, (#KEYS - 1) / 2 do
  local stream, rmeta = KEYS[2 * i], KEYS[2 * i + 1]
  local m = redis.call('HMGET', rmeta, 'dropped', 'last')
  local entries
  if mode == 'newest' then
    entries = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', tonumber(after))
  else
    entries = redis.call('XRANGE', stream, '(' .. after .. '-1', '+', 'COUNT', 100000)
  end
  local list = {}
  for _, e in ipairs(entries) do
    list[#list + 1] = { string.match(e[1], '^(%d+)'), e[2][2], e[2][8] }
  end
  out[#out + 1] = { m[1] or '0', m[2] or '0', redis.call('EXISTS', stream), list }
end
return out
"#,
    )
}
