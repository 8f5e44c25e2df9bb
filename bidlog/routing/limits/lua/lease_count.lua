-- How many unexpired leases a sorted set holds (a grid's slots, a buyer's in-flight cap
-- reservations). KEYS: the set. ARGV: now.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
