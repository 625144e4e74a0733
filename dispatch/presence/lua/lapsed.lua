-- KEYS: processes (process id -> when its lease runs out, ms of Redis's clock).
-- ARGV: the most ids to return.
-- The processes whose lease has run out, earliest first, each with when it ran out,
-- after the time now (both as strings): one clock, Redis's, for every process's lease.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
                          tonumber(ARGV[1]))
table.insert(lapsed, 1, tostring(now))
return lapsed
