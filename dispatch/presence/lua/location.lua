-- KEYS: driver hash. ARGV: driver, lat, lng, ts_ms, acc, heading, speed, cell, now_ms,
-- status to assume if none is stored; then the same for every call: cell-key prefix,
-- trace-key prefix, trace sampling interval (ms), seen key, rate-limit burst, refill per
-- ms, most positions a trace keeps (so they are packed once); then the rider forward, all empty when there is none:
-- the trip the caller believes the driver is on, its target as 'tlat,tlng', the rider's
-- channel, the frame to publish there.
-- First the driver's rate limit: a token bucket in the driver's own hash (rl_t tokens,
-- rl_at when counted), so it costs no extra key and no extra round trip. Every frame
-- that reaches the script spends a token, a stale one too; with none left the frame is
-- dropped ('limited', with the ms until the next token) and nothing else changes.
-- While the driver is on a trip, one position per interval is appended to the trip's
-- trace (PostgreSQL gets it when the trip ends). And if the driver is still on the trip
-- the caller believed, heading for the same target, the caller's frame for the rider
-- (the position and the ETA computed for that target) is published here, so the frame
-- costs no second round trip; otherwise the caller publishes it itself.
local h = redis.call('HMGET', KEYS[1], 'ts', 'cell', 'status', 'trip', 'rider', 'tlat',
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
  redis.call('HSET', KEYS[1], 'rl_t', tokens, 'rl_at', now)
  return {'stale', tostring(prev_ts), '', '', '', '', '', ''}
end
-- No status at all means Redis lost the driver (a restart): take the status the
-- driver's socket last asked for, so the next frame restores it.
local status = h[3] or ARGV[10]
local restored = ''
if not h[3] then
  restored = '1'
  -- The socket sending this frame is open, whatever count Redis forgot.
  redis.call('HSETNX', KEYS[1], 'conns', 1)
end
local cp = ARGV[11]
redis.call('HSET', KEYS[1], 'lat', ARGV[2], 'lng', ARGV[3], 'ts', ARGV[4], 'acc', ARGV[5],
           'hdg', ARGV[6], 'spd', ARGV[7], 'cell', ARGV[8], 'seen', ARGV[9],
           'status', status, 'rl_t', tokens, 'rl_at', now)
if status ~= 'offline' then
  if h[2] and h[2] ~= ARGV[8] then
    redis.call('ZREM', cp .. h[2], ARGV[1])
    geo_rem(cp, h[2], ARGV[1])
  end
  redis.call('ZADD', cp .. ARGV[8], ARGV[9], ARGV[1])
  redis.call('ZADD', ARGV[14], ARGV[9], ARGV[1])
  if status == 'available' and math.abs(tonumber(ARGV[2])) <= 85 then
    geo_add(cp, ARGV[8], ARGV[3], ARGV[2], ARGV[1])
  end
end
if h[4] and ts - tonumber(h[8] or '0') >= tonumber(ARGV[13]) then
  local trace = ARGV[12] .. h[4]
  redis.call('RPUSH', trace, ARGV[4] .. ',' .. ARGV[2] .. ',' .. ARGV[3])
  redis.call('LTRIM', trace, -tonumber(ARGV[17]), -1)
  redis.call('EXPIRE', trace, 86400)
  redis.call('HSET', KEYS[1], 'trace_ts', ARGV[4])
end
local forwarded = ''
if h[4] and h[4] == ARGV[18] and (h[6] or '') .. ',' .. (h[7] or '') == ARGV[19] then
  redis.call('PUBLISH', ARGV[20], ARGV[21])
  forwarded = '1'
end
return {'ok', status, h[4] or '', h[5] or '', h[6] or '', h[7] or '', restored, forwarded}
