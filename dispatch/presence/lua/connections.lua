-- KEYS: seen, available cells, driver hash, then the cell key and GEO set of the cell
-- the caller believes the driver is in (absent when it has no idea).
-- ARGV: +1 or -1, driver, that believed cell ('' when absent).
-- Counts the driver's open sockets (a phone and a tablet, or an old socket a reconnect
-- has not closed yet); the last one closing takes the driver offline, unless on a trip,
-- in the same step, which leaves the driver's stored cell: if that is not the cell the
-- caller declared, nothing changes and the reply is {'moved', stored cell, ...}.
-- Otherwise {'ok', new count, ...}; either way followed by the stored cell, trip,
-- rider, target lat and lng, so a process learns where the driver stands when one of
-- its sockets opens (its next frames then declare the right keys at once).
local h = redis.call('HMGET', KEYS[3], 'conns', 'status', 'cell', 'trip', 'rider', 'tlat',
                     'tlng')
local stored = {h[3] or '', h[4] or '', h[5] or '', h[6] or '', h[7] or ''}
local n = tonumber(h[1] or '0') + tonumber(ARGV[1])
if n < 0 then n = 0 end
local closing = n == 0 and tonumber(ARGV[1]) < 0 and h[2] ~= 'on_trip'
if closing and h[3] and h[3] ~= ARGV[3] then
  return {'moved', '', unpack(stored)}
end
redis.call('HSET', KEYS[3], 'conns', n)
if closing then
  redis.call('HSET', KEYS[3], 'status', 'offline')
  if h[3] then
    redis.call('ZREM', KEYS[4], ARGV[2])
    geo_rem(KEYS[5], KEYS[2], h[3], ARGV[2])
  end
  redis.call('ZREM', KEYS[1], ARGV[2])
end
return {'ok', tostring(n), unpack(stored)}
