-- KEYS: driver offer key, trip offer key, driver hash, region fence. ARGV: offer id,
-- ttl ms, min_seen_ms, the caller's fence ('' for none). Both keys or neither: a driver
-- never holds two offers and a trip never has two. A dispatcher whose leadership has
-- passed to another (the fence moved on) reserves nothing.
if ARGV[4] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[4] then return -1 end
if redis.call('HGET', KEYS[3], 'status') ~= 'available' then return 0 end
if tonumber(redis.call('HGET', KEYS[3], 'seen') or '0') < tonumber(ARGV[3]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
