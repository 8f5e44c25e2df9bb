-- One script for a whole auction: per grid, cooldown, duplicate window, caps, a slot, then a
-- token. A refused grid keeps its slots, tokens and reservations unchanged. Replies
-- {status, detail} per grid: 0 admitted, 1 cooling down (detail: until, ms), 2 no slot free,
-- 3 no token (detail: tokens left), 4 duplicate key held (detail: its value), 5 a cap is full
-- (detail: "<cap number>:<total>").
-- Per grid, KEYS: cooldown, leases, bucket, [duplicate], [in-flight set, cap counters...];
-- ARGV: now once, then per grid: lease id, limit, capacity, refill, expiry, lease ttl ms,
-- has duplicate, duplicate value, duplicate expected, cap count, then per cap: limit, seed,
-- ttl ms. Needs bucket_functions.lua before it.
local now = tonumber(ARGV[1])
local out = {}
local k = 1
local a = 2
while a <= #ARGV do
  local cooldown_key, lease_key, bucket_key = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  k = k + 3
  local lease_id = ARGV[a]
  local limit = tonumber(ARGV[a + 1])
  local capacity = tonumber(ARGV[a + 2])
  local refill = tonumber(ARGV[a + 3])
  local expires_at = ARGV[a + 4]
  local ttl_ms = tonumber(ARGV[a + 5])
  local has_dup = ARGV[a + 6] == '1'
  local dup_value = ARGV[a + 7]
  local dup_expect = ARGV[a + 8]
  local n_caps = tonumber(ARGV[a + 9])
  a = a + 10
  local dup_key = nil
  if has_dup then
    dup_key = KEYS[k]
    k = k + 1
  end
  local inflight_key = nil
  local caps = {}
  if n_caps > 0 then
    inflight_key = KEYS[k]
    k = k + 1
    for c = 1, n_caps do
      caps[c] = {KEYS[k], tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2]}
      k = k + 1
      a = a + 3
    end
  end
  local status = 0
  local detail = '0'
  local cooling = redis.call('GET', cooldown_key)
  if cooling and tonumber(cooling) > now * 1000 then
    status = 1
    detail = cooling
  end
  if status == 0 and dup_key then
    local held = redis.call('GET', dup_key)
    if held and held ~= dup_expect then
      status = 4
      detail = held
    end
  end
  if status == 0 and inflight_key then
    redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', ARGV[1])
    local pending = redis.call('ZCARD', inflight_key)
    for c = 1, n_caps do
      redis.call('SET', caps[c][1], caps[c][3], 'NX', 'PX', caps[c][4])
      local total = tonumber(redis.call('GET', caps[c][1])) + pending
      if status == 0 and total >= caps[c][2] then
        status = 5
        detail = c .. ':' .. total
      end
    end
  end
  if status == 0 then
    redis.call('ZREMRANGEBYSCORE', lease_key, '-inf', ARGV[1])
    if redis.call('ZCARD', lease_key) >= limit then
      status = 2
    end
  end
  if status == 0 then
    local tokens, ts = bucket_read(bucket_key, capacity, refill, now)
    status = 3
    if tokens - 1 >= -1e-9 then
      tokens = tokens - 1
      status = 0
      redis.call('ZADD', lease_key, expires_at, lease_id)
      redis.call('PEXPIRE', lease_key, ttl_ms)
      if dup_key then
        redis.call('SET', dup_key, dup_value, 'PX', ttl_ms)
      end
      if inflight_key then
        redis.call('ZADD', inflight_key, expires_at, lease_id)
        redis.call('PEXPIRE', inflight_key, ttl_ms)
      end
    end
    detail = bucket_write(bucket_key, tokens, ts, capacity, refill)
  end
  out[#out + 1] = {status, detail}
end
return out
