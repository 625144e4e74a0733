-- Shared by every script that changes whether a driver is available in a cell (prepended
-- to them by dispatch/presence/scripts.py): the cell's GEO set of available drivers
-- (candidate search reads it), and the set of cell names that have any available
-- driver, so a search skips empty cells without a call. Both keys come from the
-- script's KEYS (core.keys: cell_geo, available_cells); nothing here builds a key.
local function geo_add(geo, avail, cell, lng, lat, id)
  redis.call('GEOADD', geo, lng, lat, id)
  redis.call('SADD', avail, cell)
end
local function geo_rem(geo, avail, cell, id)
  if redis.call('ZREM', geo, id) == 1 and redis.call('ZCARD', geo) == 0 then
    redis.call('SREM', avail, cell)
  end
end
