-- Take one of a grid's concurrency slots: a lease scored by its expiry in a sorted set,
-- after dropping expired ones. KEYS: leases. ARGV: lease id, limit, now, expires at, key ttl
-- in ms. Replies 1 when taken, 0 when every slot is held.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
