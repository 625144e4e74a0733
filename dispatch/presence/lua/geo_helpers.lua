-- Shared by every script that changes whether a driver is available in a cell: its
-- GEO set (candidate search reads it), and the set of cells that have any available
-- driver (``<cell prefix without the colon>#avail``), so a search skips empty cells
-- without a call. Prepended to the scripts below.
local function geo_add(cp, cell, lng, lat, id)
  redis.call('GEOADD', cp .. cell .. ':g', lng, lat, id)
  redis.call('SADD', string.sub(cp, 1, -2) .. '#avail', cell)
end
local function geo_rem(cp, cell, id)
  local key = cp .. cell .. ':g'
  if redis.call('ZREM', key, id) == 1 and redis.call('ZCARD', key) == 0 then
    redis.call('SREM', string.sub(cp, 1, -2) .. '#avail', cell)
  end
end
