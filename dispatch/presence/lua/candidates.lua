-- Returns the ``want`` available drivers nearest the pickup in straight line, nearest
-- first, as (id, lat, lng, idle-since ms, shift cents, distance m) tuples.
--
-- Each cell has, beside its sorted set of online drivers, a GEO set of its *available*
-- ones (``<cell key>:g``), kept in step by every script that changes a driver's status.
-- The disk is walked ring by ring, nearest ring first. Before a ring, a lower bound on
-- the distance from the pickup to anything in that ring *or any later one* (``later``,
-- the nearest centre of those rings seen from the disk's centre cell, less a
-- circumradius and the pickup's own offset from that centre) is compared with the
-- ``want``-th best found so far: once it is farther, no later cell can improve the
-- answer and the walk stops, so a dense area touches a few dozen cells of a 271-cell
-- disk. Within a ring, one SMISMEMBER says which cells have any available driver; a cell
-- is skipped when even its nearest possible point (centre distance minus circumradius)
-- is farther than the current ``want``-th best or than the cap; otherwise GEOSEARCH
-- (C, sorted by distance) yields its nearest few within that bound, and only those are
-- read to check freshness and held offers.
--
-- ARGV: cell prefix, driver prefix, offer prefix, min_seen_ms, want, pickup lat, lng,
-- circumradius, cap, cell count n, ring count R; then per ring (cells, later); then the
-- cells as one binary string of fixed records (``_CELL_RECORD``: the 15-character cell
-- name, centre lat, centre lng as little-endian doubles), ring by ring, the disk's centre
-- cell first. Only the rings the walk reaches are decoded, and Redis parses 15 arguments
-- instead of a thousand.
local want = tonumber(ARGV[5])
local min_seen = tonumber(ARGV[4])
local plat, plng = tonumber(ARGV[6]), tonumber(ARGV[7])
local circum, cap = tonumber(ARGV[8]), tonumber(ARGV[9])
local rings = tonumber(ARGV[11])
local blob = ARGV[12 + rings * 2]
local kx = math.cos(math.rad(plat)) * 111195.0
local function dist(lat, lng)
  local x = (lng - plng) * kx
  local y = (lat - plat) * 111195.0
  return math.sqrt(x * x + y * y)
end
local best = {}
local function worst()
  if #best < want then return cap end
  return best[#best][6]
end
local avail = string.sub(ARGV[1], 1, -2) .. '#avail'
local _, olat, olng = struct.unpack('<c15dd', blob, 1)
local offset = dist(olat, olng)
local done_cells = 0
for r = 1, rings do
  local size = tonumber(ARGV[10 + r * 2])
  local later = tonumber(ARGV[11 + r * 2])
  if later - circum - offset > worst() then break end
  local names, bounds = {}, {}
  for j = 1, size do
    local name, lat, lng = struct.unpack('<c15dd', blob, (done_cells + j - 1) * 31 + 1)
    names[j] = name
    bounds[j] = dist(lat, lng) - circum
  end
  done_cells = done_cells + size
  local occupied = redis.call('SMISMEMBER', avail, unpack(names))
  for j = 1, size do
    if occupied[j] == 1 and bounds[j] <= worst() then
      local geo = ARGV[1] .. names[j] .. ':g'
      local count = want + 2
      local done = 0
      while true do
        local radius = math.max(worst(), 1)
        local found = redis.call('GEOSEARCH', geo, 'FROMLONLAT', plng, plat,
                                 'BYRADIUS', radius, 'm', 'ASC', 'COUNT', count, 'WITHCOORD')
        for i = done + 1, #found do
          local id = found[i][1]
          local lng, lat = tonumber(found[i][2][1]), tonumber(found[i][2][2])
          local d = dist(lat, lng)
          if d <= worst() and (#best < want or d < best[#best][6]) then
            local h = redis.call('HMGET', ARGV[2] .. id, 'status', 'seen', 'idle', 'shift',
                                 'lat', 'lng')
            if h[1] == 'available' and tonumber(h[2] or '0') >= min_seen
               and redis.call('EXISTS', ARGV[3] .. id) == 0 then
              local pos = #best + 1
              while pos > 1 and best[pos - 1][6] > d do pos = pos - 1 end
              table.insert(best, pos, {id, h[5], h[6], h[3] or '', h[4] or '0', d})
              if #best > want then table.remove(best) end
            end
          end
        end
        -- Fewer than asked for: the cell has nothing more within the bound. A full page
        -- whose last driver is no nearer than the current worst: nothing further in this
        -- cell can make the cut. Otherwise (the nearest were busy or stale) read on.
        if #found < count then break end
        local last = found[#found][2]
        if dist(tonumber(last[2]), tonumber(last[1])) >= worst() then break end
        done = #found
        count = count * 4
      end
    end
  end
end
local out = {}
for _, b in ipairs(best) do
  for k = 1, 5 do out[#out + 1] = b[k] end
  out[#out + 1] = tostring(b[6])
end
return out
