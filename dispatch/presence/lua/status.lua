-- KEYS: driver hash, seen. ARGV: driver, new status, cell-key prefix, now_ms.
-- Coming online from offline starts a shift: idle since now, nothing earned yet (the
-- fairness term of the dispatcher reads both).
-- Going online puts a driver with a known position back in its cell, scored by when that
-- position was taken (an old one stays too stale to dispatch on until the next frame);
-- offline takes it out. A driver on a trip stays on_trip (the trip decides, not the app).
local h = redis.call('HMGET', KEYS[1], 'cell', 'status', 'seen', 'lat', 'lng')
local current = h[2] or 'offline'
if current == 'on_trip' then return current end
if current == 'offline' and ARGV[2] == 'available' then
  redis.call('HSET', KEYS[1], 'idle', ARGV[4], 'shift', 0, 'shift_start', ARGV[4])
end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[2] == 'offline' then
  if h[1] then
    redis.call('ZREM', ARGV[3] .. h[1], ARGV[1])
    geo_rem(ARGV[3], h[1], ARGV[1])
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif h[1] and h[3] then
  redis.call('ZADD', ARGV[3] .. h[1], h[3], ARGV[1])
  redis.call('ZADD', KEYS[2], h[3], ARGV[1])
  if math.abs(tonumber(h[4])) <= 85 then
    geo_add(ARGV[3], h[1], h[5], h[4], ARGV[1])
  end
end
return ARGV[2]
