-- KEYS: processes (process id -> when its lease runs out, ms of Redis's clock).
-- ARGV: the process id, the lease in ms, what to do ('take': start the lease of a new
-- id; 'renew': extend it, only while it has not run out; 'end': let it run out now),
-- then ids the process gave up.
-- A process's sockets count while its lease lasts (dispatch.presence.sockets). A lease
-- that ran out may have been reaped already, its counts taken off its drivers, so
-- 'renew' does not bring it back: it replies 'lost' and the process takes a new id.
-- Ids given up are marked as run out now, so the dispatcher clears what they left.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == 'renew' then
  local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not ends or tonumber(ends) <= now then return 'lost' end
end
if ARGV[3] == 'end' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
for i = 4, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
return 'ok'
