-- KEYS: seen, available cells, fairness, driver hash, the driver's sockets (process id ->
-- how many it holds open), then the cell key and GEO set of the cell the caller
-- believes the driver is in (absent when it has no idea).
-- ARGV: trip, rider, target lat, target lng (an empty trip clears it), driver, now_ms,
-- cents earned by the trip that ended, that believed cell ('' when absent).
-- The target is where the driver is heading (pickup, then drop-off), so each position
-- streamed to the rider can carry an ETA without a database read. A trip that ends
-- while none of the driver's sockets is open leaves the driver offline: a driver
-- nobody can reach must not be offered the next trip. Ending a trip makes the driver
-- idle from now and adds what it earned to its shift (the fairness hash).
-- Taking an available driver out of its cell's GEO set, or putting it back, or taking
-- it offline, touches its stored cell: if that is not the cell the caller declared,
-- nothing changes and the reply is {'moved', '', stored cell}; else
-- {'ok', status, stored cell}.
if ARGV[1] == '' then
  local h = redis.call('HMGET', KEYS[4], 'status', 'cell', 'lat', 'lng')
  if h[1] == 'on_trip' and h[2] and h[2] ~= ARGV[8] then return {'moved', '', h[2]} end
  redis.call('HDEL', KEYS[4], 'trip', 'rider', 'tlat', 'tlng')
  local fair = redis.call('HGET', KEYS[3], ARGV[5])
  local shift = tonumber(fair and string.match(fair, ',(.*)$') or '0')
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[6] .. ',' .. (shift + tonumber(ARGV[7])))
  if h[1] ~= 'on_trip' then return {'ok', h[1] or 'offline', h[2] or ''} end
  local open = 0
  for _, n in ipairs(redis.call('HVALS', KEYS[5])) do open = open + tonumber(n) end
  if open > 0 then
    redis.call('HSET', KEYS[4], 'status', 'available')
    if h[2] and h[3] and math.abs(tonumber(h[3])) <= 85 then
      geo_add(KEYS[7], KEYS[2], h[2], h[4], h[3], ARGV[5])
    end
    return {'ok', 'available', h[2] or ''}
  end
  redis.call('HSET', KEYS[4], 'status', 'offline')
  if h[2] then
    redis.call('ZREM', KEYS[6], ARGV[5])
    geo_rem(KEYS[7], KEYS[2], h[2], ARGV[5])
  end
  redis.call('ZREM', KEYS[1], ARGV[5])
  return {'ok', 'offline', h[2] or ''}
end
local h = redis.call('HMGET', KEYS[4], 'cell', 'status')
-- Only an available driver is in a GEO set (every script keeps it so).
if h[1] and h[2] == 'available' then
  if h[1] ~= ARGV[8] then return {'moved', '', h[1]} end
  geo_rem(KEYS[7], KEYS[2], h[1], ARGV[5])
end
redis.call('HSET', KEYS[4], 'status', 'on_trip', 'trip', ARGV[1], 'rider', ARGV[2],
           'tlat', ARGV[3], 'tlng', ARGV[4])
return {'ok', 'on_trip', h[1] or ''}
