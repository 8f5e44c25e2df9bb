-- The token bucket, shared by the single-take script (bucket.lua) and the admission script
-- (admit.lua), which scripts.py prefix with this file: read the bucket refilled up to `now`,
-- and write it back with an expiry of one full refill.
local function bucket_read(key, capacity, refill, now)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = capacity
    ts = now
  end
  if now > ts then
    tokens = math.min(capacity, tokens + (now - ts) * refill)
    ts = now
  end
  return tokens, ts
end

local function bucket_write(key, tokens, ts, capacity, refill)
  local tokens_text = string.format('%.17g', tokens)
  redis.call('HSET', key, 'tokens', tokens_text, 'ts', string.format('%.17g', ts))
  redis.call('PEXPIRE', key, math.ceil(capacity / refill * 1000) + 1000)
  return tokens_text
end
