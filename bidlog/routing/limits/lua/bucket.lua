-- Take `cost` tokens from one grid's bucket if `keep` tokens stay behind; a cost of 0 only
-- tells whether a whole token is there. KEYS: bucket. ARGV: capacity, refill (tokens per
-- second), now, cost, keep. Replies {allowed (1 or 0), tokens left}.
local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local keep = tonumber(ARGV[5])
local tokens, ts = bucket_read(KEYS[1], capacity, refill, now)
local allowed = 0
if cost > 0 and tokens - cost >= keep - 1e-9 then
  tokens = tokens - cost
  allowed = 1
elseif cost == 0 and tokens >= 1 - 1e-9 then
  allowed = 1
end
return {allowed, bucket_write(KEYS[1], tokens, ts, capacity, refill)}
