-- Compare and swap one duplicate key: replace (or delete, for an empty value) only when it
-- still holds the expected value, so nobody clears a hold that another route has taken since.
-- KEYS: the duplicate key. ARGV: expected value, new value, its ttl in ms.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
  return 1
end
return 0
