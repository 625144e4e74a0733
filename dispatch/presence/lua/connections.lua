-- KEYS: seen, available cells, driver hash, the driver's sockets (process id -> how many
-- of the driver's sockets that process holds open), the process's drivers (the set of
-- drivers it counts sockets for), then the cell key and GEO set of the cell the caller
-- believes the driver is in (absent when it has no idea).
-- ARGV: driver, process id, change ('1', '-1', any count to add; 'drop': all of this
-- process's, as when it is gone), that believed cell ('' when absent).
-- Counts the driver's open sockets per api process (a phone and a tablet, or an old
-- socket a reconnect has not closed yet, maybe on another process), so a process that
-- dies takes its counts with it (dispatch.presence.sockets). The driver is connected
-- while any count remains; the change that leaves none takes the driver offline, unless
-- on a trip, in the same step, which leaves the driver's stored cell: if that is not the
-- cell the caller declared, nothing changes and the reply is {'moved', ...}. Otherwise
-- {'ok', ...}. Either way: the sockets left in all, the stored cell, trip, rider,
-- target lat and lng (so a process learns where the driver stands when one of its
-- sockets opens, and its next frames declare the right keys at once), the status, and
-- this process's count before the change.
local h = redis.call('HMGET', KEYS[3], 'status', 'cell', 'trip', 'rider', 'tlat', 'tlng')
local own = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
local n = 0
local fewer = own > 0
if ARGV[3] ~= 'drop' then
  n = own + tonumber(ARGV[3])
  fewer = tonumber(ARGV[3]) < 0
end
if n < 0 then n = 0 end
local total = n
local counts = redis.call('HGETALL', KEYS[4])
for i = 1, #counts, 2 do
  if counts[i] ~= ARGV[2] then total = total + tonumber(counts[i + 1]) end
end
local closing = total == 0 and fewer and h[1] ~= 'on_trip'
local status = h[1] or ''
local function reply(kind)
  return {kind, tostring(total), h[2] or '', h[3] or '', h[4] or '', h[5] or '', h[6] or '',
          status, tostring(own)}
end
if closing and h[2] and h[2] ~= ARGV[4] then return reply('moved') end
if n > 0 then
  redis.call('HSET', KEYS[4], ARGV[2], n)
  redis.call('SADD', KEYS[5], ARGV[1])
else
  redis.call('HDEL', KEYS[4], ARGV[2])
  redis.call('SREM', KEYS[5], ARGV[1])
end
if closing then
  status = 'offline'
  redis.call('HSET', KEYS[3], 'status', 'offline')
  if h[2] then
    redis.call('ZREM', KEYS[6], ARGV[1])
    geo_rem(KEYS[7], KEYS[2], h[2], ARGV[1])
  end
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return reply('ok')
