-- KEYS: driver offer key, trip offer key, held offers. ARGV: offer id, ttl ms, driver.
-- Puts a pending offer's reservation back after Redis lost it (dispatch.offers:
-- restore_pending): each key only if absent, and the driver's held-offers entry with
-- the driver's key, expiring with it. Returns 1 if the driver's key was set.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local set = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
if set then redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[2]), ARGV[3]) end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX')
if set then return 1 end
return 0
