-- A cap's committed count plus the buyer's reservations in flight. KEYS: in-flight set,
-- the cap's counter. ARGV: now.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return (tonumber(redis.call('GET', KEYS[2])) or 0) + redis.call('ZCARD', KEYS[1])
