-- Returns the ``want`` available, fresh, unreserved drivers nearest the pickup in
-- straight line, nearest first, as (id, 'lat,lng', 'idle_since_ms,shift_cents' or '')
-- triples: the position exactly as the driver sent it, and what fairness reads.
--
-- KEYS: available cells, seen, held offers, positions, fairness; then the GEO set of
-- every cell of the disk, in the order of the cell records below (all built in
-- core.keys and packed once per disk by dispatch.presence.disk).
-- ARGV: min_seen_ms, want, pickup lat, lng, cap (m), circumradius (m), cell count n,
-- ring count R; then per ring (cells, later); then the cells as one binary string of
-- fixed records (disk.CELL_RECORD: the 15-character cell name, centre lat, centre lng
-- as little-endian doubles), ring by ring, the disk's centre cell first. Only the rings
-- the walk reaches are decoded.
--
-- Each cell has, beside its sorted set of online drivers, a GEO set of its *available*
-- ones, kept in step by every script that changes a driver's status or cell: being in
-- one is being available. The disk is walked ring by ring, nearest ring first. Before a
-- ring, a lower bound on the distance from the pickup to anything in that ring *or any
-- later one* (``later``, the nearest centre of those rings seen from the disk's centre
-- cell, less a circumradius and the pickup's own offset from that centre) is compared
-- with the ``want``-th best found so far: once it is farther, no later cell can improve
-- the answer and the walk stops, so a dense area touches a few dozen cells of a 271-cell
-- disk. Within a ring, one SMISMEMBER says which cells have any available driver; a cell
-- is skipped when even its nearest possible point (centre distance minus circumradius)
-- is farther than the current ``want``-th best or than the cap; otherwise GEOSEARCH
-- (C, sorted by distance) yields its nearest few within that bound, and only those are
-- checked: fresh (their score in seen, one ZMSCORE for the page) and not holding an
-- offer (no score in held offers later than now, one ZMSCORE). Positions and fairness
-- are read for the winners only, at the end.
local min_seen, want = tonumber(ARGV[1]), tonumber(ARGV[2])
local plat, plng = tonumber(ARGV[3]), tonumber(ARGV[4])
local cap, circum = tonumber(ARGV[5]), tonumber(ARGV[6])
local rings = tonumber(ARGV[8])
local blob = ARGV[9 + rings * 2]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kx = math.cos(math.rad(plat)) * 111195.0
local function dist(lat, lng)
  local x = (lng - plng) * kx
  local y = (lat - plat) * 111195.0
  return math.sqrt(x * x + y * y)
end
local best = {}  -- {id, distance, lat, lng as the GEO set has them}, nearest first
local function worst()
  if #best < want then return cap end
  return best[#best][2]
end
-- Lua's unpack has a stack limit: members go to Redis in slices of this many.
local SLICE = 1000
local function scores(key, ids)
  if #ids <= SLICE then return redis.call('ZMSCORE', key, unpack(ids)) end
  local out = {}
  for i = 1, #ids, SLICE do
    local part = redis.call('ZMSCORE', key, unpack(ids, i, math.min(i + SLICE - 1, #ids)))
    for k = 1, #part do out[#out + 1] = part[k] end
  end
  return out
end
local _, olat, olng = struct.unpack('<c15dd', blob, 1)
local offset = dist(olat, olng)
local done_cells = 0
for r = 1, rings do
  local size = tonumber(ARGV[7 + r * 2])
  local later = tonumber(ARGV[8 + r * 2])
  if later - circum - offset > worst() then break end
  local names, bounds = {}, {}
  for j = 1, size do
    local name, lat, lng = struct.unpack('<c15dd', blob, (done_cells + j - 1) * 31 + 1)
    names[j] = name
    bounds[j] = dist(lat, lng) - circum
  end
  local occupied = redis.call('SMISMEMBER', KEYS[1], unpack(names))
  for j = 1, size do
    if occupied[j] == 1 and bounds[j] <= worst() then
      local geo = KEYS[5 + done_cells + j]
      local count = want + 2
      local done = 0
      while true do
        local radius = math.max(worst(), 1)
        local found = redis.call('GEOSEARCH', geo, 'FROMLONLAT', plng, plat,
                                 'BYRADIUS', radius, 'm', 'ASC', 'COUNT', count, 'WITHCOORD')
        -- The page's drivers near enough to make the cut as it stands; then their
        -- freshness and reservations, one call each for all of them.
        local ids, near = {}, {}
        local limit = worst()
        for i = done + 1, #found do
          local lng, lat = found[i][2][1], found[i][2][2]
          local d = dist(tonumber(lat), tonumber(lng))
          if d <= limit then
            ids[#ids + 1] = found[i][1]
            near[#near + 1] = {found[i][1], d, lat, lng}
          end
        end
        if #ids > 0 then
          local seen, held = scores(KEYS[2], ids), scores(KEYS[3], ids)
          for i = 1, #ids do
            local d = near[i][2]
            if d <= worst() and (#best < want or d < best[#best][2])
               and tonumber(seen[i] or '0') >= min_seen
               and not (held[i] and tonumber(held[i]) > now_ms) then
              local pos = #best + 1
              while pos > 1 and best[pos - 1][2] > d do pos = pos - 1 end
              table.insert(best, pos, near[i])
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
  done_cells = done_cells + size
end
local out = {}
for i = 1, #best, SLICE do
  local ids = {}
  for k = i, math.min(i + SLICE - 1, #best) do ids[#ids + 1] = best[k][1] end
  local positions = redis.call('HMGET', KEYS[4], unpack(ids))
  local fairness = redis.call('HMGET', KEYS[5], unpack(ids))
  for k = 1, #ids do
    -- A driver indexed before positions were kept has none until its next frame (a
    -- few seconds): its GEO position stands in, good to about a metre.
    out[#out + 1] = ids[k]
    local b = best[i + k - 1]
    out[#out + 1] = positions[k] or (b[3] .. ',' .. b[4])
    out[#out + 1] = fairness[k] or ''
  end
end
return out
