-- wrk's script for benchmarks/route.py, run in each of wrk's threads: every request carries a
-- fresh caller (as the Python clients do); done() sums the threads' counters and prints one
-- line, starting WRK, for the benchmark to parse.
local token = os.getenv("ROUTE_TOKEN")
local strategy = os.getenv("ROUTE_STRATEGY")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Token " .. token
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

function init(args)
  routed = 0
  bad = 0
  math.randomseed(os.time() * 1000 + id)
end

function request()
  local caller = string.format("%d%02d%d%06d", math.random(2, 9), math.random(0, 99),
    math.random(2, 9), math.random(0, 999999))
  local body = '{"CallerId": "' .. caller .. '", "InboundStateCode": "CO", "strategy": "'
    .. strategy .. '"}'
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  elseif string.find(body, '"routed":true', 1, true) then
    routed = routed + 1
  end
end

function done(summary, latency, requests)
  local r, b = 0, 0
  for _, thread in ipairs(threads) do
    r = r + thread:get("routed")
    b = b + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %.6f %.3f %.3f %.3f %.3f %.3f\n",
    summary.requests, b, r, e.connect + e.read + e.write, e.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000))
end
