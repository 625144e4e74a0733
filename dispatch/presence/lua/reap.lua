-- KEYS: seen. ARGV: cutoff_ms, limit, driver-key prefix, cell-key prefix.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  local cell = redis.call('HGET', ARGV[3] .. id, 'cell')
  if cell then
    redis.call('ZREM', ARGV[4] .. cell, id)
    geo_rem(ARGV[4], cell, id)
  end
  redis.call('ZREM', KEYS[1], id)
end
return ids
