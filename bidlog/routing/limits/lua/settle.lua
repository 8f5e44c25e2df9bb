-- Settle one reservation. ARGV: op (keep, release, give_back), token, pending value, has
-- in-flight set, has duplicate key, won value ("" unless a kept call is written), its hold in
-- ms; KEYS: [in-flight set], [duplicate], cap counters...
-- A counter that expired is not re-created: its next seed comes from the database.
local op, token, pending = ARGV[1], ARGV[2], ARGV[3]
local k = 1
local inflight, dup = nil, nil
if ARGV[4] == '1' then
  inflight = KEYS[k]
  k = k + 1
end
if ARGV[5] == '1' then
  dup = KEYS[k]
  k = k + 1
end
if op == 'keep' then
  if inflight and redis.call('ZREM', inflight, token) == 1 then
    for i = k, #KEYS do
      if redis.call('EXISTS', KEYS[i]) == 1 then
        redis.call('INCR', KEYS[i])
      end
    end
  end
  if dup and ARGV[6] ~= '' and redis.call('GET', dup) == pending then
    redis.call('SET', dup, ARGV[6], 'PX', ARGV[7])
  end
  return 1
end
if op == 'release' then
  if inflight then
    redis.call('ZREM', inflight, token)
  end
else
  for i = k, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('DECR', KEYS[i])
    end
  end
end
if dup and redis.call('GET', dup) == pending then
  redis.call('DEL', dup)
end
return 1
