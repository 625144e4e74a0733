-- KEYS: driver offer key, trip offer key, deadlines, held offers. ARGV: offer id,
-- driver. Deletes only keys that still name this offer, so a late release never frees
-- someone else's reservation; the driver leaves the held-offers set with its key.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[4], ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
