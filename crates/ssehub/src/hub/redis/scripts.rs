//! What the Redis backplane keeps in Redis, and the Lua scripts that change it.
//!
//! Keys, under a prefix `P` (several hubs can share one Redis):
//! - `P:meta`, a hash: `seq`, the hub-wide sequence (every publication takes the next
//!   number, recorded or not), and `epoch`, the history's epoch (8 hex digits). A new
//!   epoch is drawn, and the sequence starts again from 0, when the hash is missing (a
//!   Redis that lost its data) or when the sequence went back (a node has delivered past
//!   it: a failover to a replica that lagged, a restore), so that no id is ever given to
//!   two events and old cursors are known as such. The ids the script makes carry both:
//!   `<epoch>-<seq>`, or on a hub of URN ids (`hub/topics.rs`) `urn:uuid:<epoch>-...`,
//!   as `hub_id_of` writes them, so that a cursor made on any node reads back on any.
//! - `P:room:<room>`, a stream per room with history; entry ids are `<seq>-1`, fields
//!   `f` (the encoded frame, id line included), `t` (ms, Redis's clock), `c` (the
//!   caller's id, or empty), `h` (the header the nodes got with it: its rooms, its
//!   private flag, ...). It expires whole once its newest event is too old.
//! - `P:roommeta:<room>`, a hash: `epoch` (the one its stream belongs to: a room of
//!   another epoch holds nothing of this one, and is emptied when next published to),
//!   `bytes` (what the stream holds), `dropped` (the sequence number of the newest event
//!   dropped from it), `last` (of the newest event added): enough to tell whether a
//!   cursor's events were evicted.
//! - `P:log`, `P:logmeta`: on a hub with patterns only (a topic dialect: a reader by
//!   pattern may want any event, and has no room stream to read), the hub-wide log:
//!   every event recorded in some room, in sequence order, as a room's stream and meta
//!   hash (same entries and fields, the header naming its rooms and its private flag),
//!   bounded by `HubConfig::history_total_bytes`, the longest age of a room's history
//!   and [`super::LOG_EVENTS`] entries. A room hub does not write it.
//! - `P:id:<id>`: `<epoch>-<seq>` of an event that brought its own id, for as long as
//!   the event may stay in any history (its rooms' longest age). Where ids may repeat
//!   (`TopicRules::repeat_ids`), it keeps naming the earliest event of this epoch that
//!   carried the id, and lives as long as the newest may stay: a cursor resolves there
//!   (replaying the later ones again: duplicates, never a loss).
//! - `P:events`, the one PUB/SUB channel every node listens to: every publication, in
//!   sequence order, and the nodes' probes (`wire.rs`).
//!
//! History is read with plain, bounded commands, not with a script (`replay.rs`).

use redis::Script;

/// Publish one event: number it, record it in the streams of its rooms with history
/// (trimming them by count, bytes and age) and, on a hub with patterns, in the log, and
/// hand it to every node, atomically.
///
/// Every check comes before the first write: Redis does not undo what a script wrote
/// before it failed, and a number taken by a publication that then fails would be a
/// number no node can ever fill.
///
/// KEYS: `P:meta`, `P:id:<own id>` (or any key when none), `P:log`, `P:logmeta` (read
/// only when the log is kept), then per room with history its stream and its meta hash.
/// ARGV: the frame without its id line, the own id (or empty), a fresh epoch (used if a
/// new one starts), the number of rooms with history, the header of the message to the
/// nodes, the channel, the publishing node's epoch and the newest number it delivered in
/// it, the form of the hub's ids (`urn` or `plain`), whether an own id may repeat (`1`),
/// whether the log is kept (`1`) and its event, byte and age (ms) limits, then per room
/// its event, byte and age (ms) limits. Returns `{seq, id, epoch}`; an own id already in
/// use (where ids may not repeat) is the error `DUPLICATE`.
pub(super) fn publish() -> Script {
    Script::new(
        r#"
local meta, idkey = KEYS[1], KEYS[2]
local rest, own, fresh, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local header, channel = ARGV[5], ARGV[6]
local seen_epoch, seen = ARGV[7], tonumber(ARGV[8])
local urn, repeat_ids, log = ARGV[9] == 'urn', ARGV[10] == '1', ARGV[11] == '1'
local m = redis.call('HMGET', meta, 'epoch', 'seq')
local epoch, seq = m[1], tonumber(m[2] or '0')
-- The sequence went back if this node delivered past it in the same epoch.
local renew = (not epoch) or (epoch == seen_epoch and seq < seen)
-- Where the event is recorded: its rooms' streams, and the hub-wide log (a reader by
-- pattern may want any event); each with the place of its limits in ARGV.
local streams = {}
for i = 1, n do
  streams[i] = { stream = KEYS[3 + 2 * i], rmeta = KEYS[4 + 2 * i], limits = 11 + 3 * i }
end
if log and n > 0 then
  streams[n + 1] = { stream = KEYS[3], rmeta = KEYS[4], limits = 11 }
end
for _, s in ipairs(streams) do
  local rm = redis.call('HMGET', s.rmeta, 'epoch', 'last')
  local kind = redis.call('TYPE', s.stream).ok
  if kind ~= 'stream' and kind ~= 'none' then
    -- Here, not at XADD, after the sequence was taken.
    return redis.error_reply('WRONGTYPE ' .. s.stream .. ' is not a stream')
  end
  if rm[1] == epoch and tonumber(rm[2] or '0') > seq then
    -- The stream is ahead of the sequence (the meta hash went back alone): an XADD
    -- would fail, and ids would repeat.
    renew = true
  end
  s.epoch, s.last = rm[1], rm[2]
end
if renew then
  epoch, seq = fresh, 0
end
local held = nil
if n > 0 and own ~= '' then
  held = redis.call('GET', idkey)
  if held and string.match(held, '^(%x+)%-') ~= epoch then held = nil end
  if held and not repeat_ids then
    return redis.error_reply('DUPLICATE')
  end
end
-- Writes only from here on.
if renew then redis.call('HSET', meta, 'epoch', epoch, 'seq', 0) end
seq = redis.call('HINCRBY', meta, 'seq', 1)
local id = own
if n > 0 and own == '' then
  if urn then
    -- As `hub_id_of` writes it: the number's high 16 bits, then its low 48 bits.
    local high = math.floor(seq / 281474976710656)
    local low = seq - high * 281474976710656
    id = string.format('urn:uuid:%s-%04x-4000-8000-%012x', epoch, high, low)
  else
    id = epoch .. '-' .. seq
  end
end
local frame = rest
if id ~= '' then frame = 'id: ' .. id .. '\n' .. rest end
if n > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local longest = 0
  for _, s in ipairs(streams) do
    local stream, rmeta = s.stream, s.rmeta
    local max_events = tonumber(ARGV[s.limits + 1])
    local max_bytes = tonumber(ARGV[s.limits + 2])
    local max_age = tonumber(ARGV[s.limits + 3])
    if max_age > longest then longest = max_age end
    local last = s.last
    if s.epoch ~= epoch then
      -- History of another epoch (or none): nothing a cursor of this one can use.
      redis.call('DEL', stream, rmeta)
      redis.call('HSET', rmeta, 'epoch', epoch)
      last = nil
    end
    local len = redis.call('XLEN', stream)
    if len == 0 and last then
      -- The stream expired whole (its newest event grew too old): what the room had is
      -- gone, through its last event, and so are its bytes.
      redis.call('HSET', rmeta, 'dropped', last, 'bytes', 0)
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
  if own ~= '' then
    if held then
      -- A repeated id (where allowed) keeps naming its earliest event, for as long as
      -- its newest may stay in a history.
      local ttl = redis.call('PTTL', idkey)
      if ttl < longest then redis.call('PEXPIRE', idkey, longest) end
    else
      redis.call('SET', idkey, epoch .. '-' .. seq, 'PX', longest)
    end
  end
end
redis.call('PUBLISH', channel, epoch .. '-' .. seq .. '\n' .. header .. '\n' .. frame)
return {seq, id, epoch}
"#,
    )
}

/// A probe: read the epoch and the sequence, start a new epoch if there is none or if
/// the sequence went back (as the publish script does), and say where they are on the
/// channel, for every node to hear.
///
/// KEYS: `P:meta`. ARGV: the channel, the probing node, its epoch and the newest number
/// it delivered in it, a fresh epoch. Returns `{epoch, seq}`.
pub(super) fn probe() -> Script {
    Script::new(
        r#"
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local epoch, seq = m[1], tonumber(m[2] or '0')
if (not epoch) or (epoch == ARGV[3] and seq < tonumber(ARGV[4])) then
  epoch, seq = ARGV[5], 0
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
redis.call('PUBLISH', ARGV[1], 'probe ' .. epoch .. '-' .. seq .. '\n' .. ARGV[2] .. '\n')
return {epoch, seq}
"#,
    )
}
