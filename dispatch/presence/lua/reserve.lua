-- KEYS: driver offer key, trip offer key, driver hash, region fence, held offers.
-- ARGV: offer id, ttl ms, min_seen_ms, the caller's fence ('' for none), driver.
-- Both keys or neither: a driver never holds two offers and a trip never has two. A
-- dispatcher whose leadership has passed to another (the fence moved on) reserves
-- nothing. The driver's entry in the held-offers set expires with its key (same clock,
-- same ttl), so candidate search reads one key for every driver's reservation.
if ARGV[4] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[4] then return -1 end
if redis.call('HGET', KEYS[3], 'status') ~= 'available' then return 0 end
if tonumber(redis.call('HGET', KEYS[3], 'seen') or '0') < tonumber(ARGV[3]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[5], now_ms + tonumber(ARGV[2]), ARGV[5])
return 1
