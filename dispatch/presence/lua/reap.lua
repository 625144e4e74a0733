-- KEYS: seen, available cells, driver hash, then the cell key and GEO set of the cell
-- the reaper read from the driver's hash (absent when it had none).
-- ARGV: driver, cutoff_ms, that cell ('' when absent).
-- The second phase of reaping one stale driver (dispatch.presence.index: reap_stale
-- read the stale ids and their cells first, with plain commands): still stale, it
-- leaves its cell's sets and seen; its hash, status included, is kept, so its next
-- frame puts it back. {'fresh'} if a frame came meanwhile; {'moved', stored cell} if
-- its cell is not the one declared (nothing changed); else {'reaped'}.
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seen or tonumber(seen) > tonumber(ARGV[2]) then return {'fresh'} end
local cell = redis.call('HGET', KEYS[3], 'cell')
if cell and cell ~= ARGV[3] then return {'moved', cell} end
if cell then
  redis.call('ZREM', KEYS[4], ARGV[1])
  geo_rem(KEYS[5], KEYS[2], cell, ARGV[1])
end
redis.call('ZREM', KEYS[1], ARGV[1])
return {'reaped'}
