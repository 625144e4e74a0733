-- KEYS: seen, positions, available cells, the frame's cell key and GEO set, the cell
-- key and GEO set of the cell the caller believes the driver was in (the frame's own
-- when it has no idea), the driver hash, and when the caller believes the driver is on
-- a trip, that trip's trace.
-- ARGV: driver, lat, lng, ts_ms, acc, heading, speed, cell, now_ms, status to assume if
-- none is stored, the believed cell, the believed trip ('' for none); then the same for
-- every call (packed once): trace sampling interval (ms), most positions a trace keeps,
-- rate-limit burst, refill per ms; then the rider forward, all empty when there is
-- none: the trip and target ('tlat,tlng') the frame for the rider was computed for,
-- the rider's channel, the frame, and '1' if the caller can compute it again for
-- another trip or target (so it wants a 'moved' reply rather than no forward).
--
-- First the driver's rate limit: a token bucket in the driver's own hash (rl_t tokens,
-- rl_at when counted), so it costs no extra key and no extra round trip. Every frame
-- that reaches the script spends a token, a stale one too; with none left the frame is
-- dropped ('limited', with the ms until the next token) and nothing else changes.
--
-- Then the keys the frame must touch beyond those declared for every frame: the cell
-- the driver leaves (its hash's cell, if the frame is in another one and the driver is
-- online) and the trace of the trip its hash names (one position per interval while on
-- a trip; PostgreSQL gets the trace when the trip ends). If either is not what the
-- caller declared, or the caller can forward and the driver is on another trip or
-- heading for another target than the forward's, nothing changes and the reply is
-- {'moved', stored cell, trip, rider, target lat, target lng}: the caller retries with
-- those, at once, the forward recomputed for that trip and target. A 'moved' spends no
-- token; the retry does.
--
-- If the driver is on the trip the forward was computed for, heading for the same
-- target, the frame for the rider (the position and the ETA to that target) is
-- published here, so an on-trip frame costs no second round trip.
local h = redis.call('HMGET', KEYS[8], 'ts', 'cell', 'status', 'trip', 'rider', 'tlat',
                     'tlng', 'trace_ts', 'rl_t', 'rl_at')
local now = tonumber(ARGV[9])
local burst, refill = tonumber(ARGV[15]), tonumber(ARGV[16])
local tokens = tonumber(h[9] or ARGV[15])
local counted_at = tonumber(h[10] or ARGV[9])
if now > counted_at then tokens = math.min(burst, tokens + (now - counted_at) * refill) end
if tokens < 1 then
  return {'limited', tostring(math.ceil((1 - tokens) / refill)), '', '', '', '', '', ''}
end
tokens = tostring(tokens - 1)
if now < counted_at then now = counted_at end
local prev_ts = tonumber(h[1] or '0')
local ts = tonumber(ARGV[4])
if ts <= prev_ts then
  redis.call('HSET', KEYS[8], 'rl_t', tokens, 'rl_at', now)
  return {'stale', tostring(prev_ts), '', '', '', '', '', ''}
end
-- No status at all means Redis lost the driver (a restart): take the status the
-- driver's socket last asked for, so the next frame restores it.
local status = h[3] or ARGV[10]
local cell, left, trip = ARGV[8], h[2], h[4]
local leaving = status ~= 'offline' and left and left ~= cell
local tracing = trip and ts - tonumber(h[8] or '0') >= tonumber(ARGV[13])
local forward = trip and trip == ARGV[17] and (h[6] or '') .. ',' .. (h[7] or '') == ARGV[18]
if (leaving and left ~= ARGV[11]) or (tracing and trip ~= ARGV[12])
   or (trip and not forward and ARGV[21] == '1') then
  return {'moved', left or '', trip or '', h[5] or '', h[6] or '', h[7] or '', '', ''}
end
-- (The socket sending this frame is counted again by its process, which finds its lease
-- gone too: dispatch.presence.sockets. Nothing here touches socket counts.)
local restored = ''
if not h[3] then restored = '1' end
redis.call('HSET', KEYS[8], 'lat', ARGV[2], 'lng', ARGV[3], 'ts', ARGV[4], 'acc', ARGV[5],
           'hdg', ARGV[6], 'spd', ARGV[7], 'cell', cell, 'seen', ARGV[9],
           'status', status, 'rl_t', tokens, 'rl_at', now)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ',' .. ARGV[3])
if status ~= 'offline' then
  if leaving then
    redis.call('ZREM', KEYS[6], ARGV[1])
    geo_rem(KEYS[7], KEYS[3], left, ARGV[1])
  end
  redis.call('ZADD', KEYS[4], ARGV[9], ARGV[1])
  redis.call('ZADD', KEYS[1], ARGV[9], ARGV[1])
  if status == 'available' and math.abs(tonumber(ARGV[2])) <= 85 then
    geo_add(KEYS[5], KEYS[3], cell, ARGV[3], ARGV[2], ARGV[1])
  end
end
if tracing then
  redis.call('RPUSH', KEYS[9], ARGV[4] .. ',' .. ARGV[2] .. ',' .. ARGV[3])
  redis.call('LTRIM', KEYS[9], -tonumber(ARGV[14]), -1)
  redis.call('EXPIRE', KEYS[9], 86400)
  redis.call('HSET', KEYS[8], 'trace_ts', ARGV[4])
end
local forwarded = ''
if forward then
  redis.call('PUBLISH', ARGV[19], ARGV[20])
  forwarded = '1'
end
return {'ok', status, trip or '', h[5] or '', h[6] or '', h[7] or '', restored, forwarded}
