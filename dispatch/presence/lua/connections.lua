-- KEYS: driver hash, seen. ARGV: +1 or -1, driver, cell-key prefix. Counts the driver's
-- open sockets (a phone and a tablet, or an old socket a reconnect has not closed yet);
-- the last one closing takes the driver offline, unless on a trip, in the same step.
-- Returns the new count.
local n = redis.call('HINCRBY', KEYS[1], 'conns', ARGV[1])
if n < 0 then redis.call('HSET', KEYS[1], 'conns', 0); n = 0 end
if n == 0 and tonumber(ARGV[1]) < 0 then
  local h = redis.call('HMGET', KEYS[1], 'status', 'cell')
  if h[1] ~= 'on_trip' then
    redis.call('HSET', KEYS[1], 'status', 'offline')
    if h[2] then
      redis.call('ZREM', ARGV[3] .. h[2], ARGV[2])
      geo_rem(ARGV[3], h[2], ARGV[2])
    end
    redis.call('ZREM', KEYS[2], ARGV[2])
  end
end
return n
