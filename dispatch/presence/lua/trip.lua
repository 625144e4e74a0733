-- KEYS: driver hash, seen. ARGV: trip, rider, target lat, target lng (empty trip clears
-- it), driver id, cell-key prefix, now_ms, cents earned by the trip that ended. The
-- target is where the driver is heading (pickup, then drop-off), so each position
-- streamed to the rider can carry an ETA without a database read. A trip that ends
-- while none of the driver's sockets is open leaves the driver offline: a driver
-- nobody can reach must not be offered the next trip.
if ARGV[1] == '' then
  local h = redis.call('HMGET', KEYS[1], 'status', 'conns', 'cell', 'lat', 'lng')
  redis.call('HDEL', KEYS[1], 'trip', 'rider', 'tlat', 'tlng')
  redis.call('HSET', KEYS[1], 'idle', ARGV[7])
  redis.call('HINCRBY', KEYS[1], 'shift', ARGV[8])
  if h[1] ~= 'on_trip' then return h[1] or 'offline' end
  if tonumber(h[2] or '0') > 0 then
    redis.call('HSET', KEYS[1], 'status', 'available')
    if h[3] and h[4] and math.abs(tonumber(h[4])) <= 85 then
      geo_add(ARGV[6], h[3], h[5], h[4], ARGV[5])
    end
    return 'available'
  end
  redis.call('HSET', KEYS[1], 'status', 'offline')
  if h[3] then
    redis.call('ZREM', ARGV[6] .. h[3], ARGV[5])
    geo_rem(ARGV[6], h[3], ARGV[5])
  end
  redis.call('ZREM', KEYS[2], ARGV[5])
  return 'offline'
end
local cell = redis.call('HGET', KEYS[1], 'cell')
if cell then geo_rem(ARGV[6], cell, ARGV[5]) end
redis.call('HSET', KEYS[1], 'status', 'on_trip', 'trip', ARGV[1], 'rider', ARGV[2],
           'tlat', ARGV[3], 'tlng', ARGV[4])
return 'on_trip'
