-- KEYS: seen, available cells, fairness, driver hash, then the cell key and GEO set of
-- the cell the caller believes the driver is in (absent when it has no idea).
-- ARGV: driver, new status, now_ms, that believed cell ('' when absent).
-- Coming online from offline starts a shift: idle since now, nothing earned yet (the
-- fairness term of the dispatcher reads both, from the fairness hash).
-- Going online puts a driver with a known position back in its cell, scored by when that
-- position was taken (an old one stays too stale to dispatch on until the next frame);
-- offline takes it out. A driver on a trip stays on_trip (the trip decides, not the app).
-- The driver's cell is what its hash says. When the change must touch that cell and it
-- is not the one the caller declared, nothing changes: the reply is
-- {'moved', '', stored cell} and the caller retries with that cell's keys.
-- Otherwise {'ok', status, stored cell}.
local h = redis.call('HMGET', KEYS[4], 'cell', 'status', 'seen', 'lat', 'lng')
local current = h[2] or 'offline'
if current == 'on_trip' then return {'ok', current, h[1] or ''} end
local joins = ARGV[2] ~= 'offline' and h[1] and h[3]
if (joins or ARGV[2] == 'offline') and h[1] and h[1] ~= ARGV[4] then
  return {'moved', '', h[1]}
end
if current == 'offline' and ARGV[2] == 'available' then
  redis.call('HSET', KEYS[4], 'shift_start', ARGV[3])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3] .. ',0')
end
redis.call('HSET', KEYS[4], 'status', ARGV[2])
if ARGV[2] == 'offline' then
  if h[1] then
    redis.call('ZREM', KEYS[5], ARGV[1])
    geo_rem(KEYS[6], KEYS[2], h[1], ARGV[1])
  end
  redis.call('ZREM', KEYS[1], ARGV[1])
elseif joins then
  redis.call('ZADD', KEYS[5], h[3], ARGV[1])
  redis.call('ZADD', KEYS[1], h[3], ARGV[1])
  if math.abs(tonumber(h[4])) <= 85 then
    geo_add(KEYS[6], KEYS[2], h[1], h[5], h[4], ARGV[1])
  end
end
return {'ok', ARGV[2], h[1] or ''}
