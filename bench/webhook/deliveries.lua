-- wrk script: each request is the next pre-signed delivery (unique delivery id), so
-- every accepted request is a new durable job. Counts statuses per thread.
local file = os.getenv("DELIVERIES")
local lines = {}
for line in io.lines(file) do lines[#lines + 1] = line end

local threads = {}
function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end

function init(args)
  idx = offset
  step = tonumber(os.getenv("WRK_THREADS") or "2")
  accepted, other = 0, 0
end

function request()
  idx = idx + step
  local line = lines[(idx % #lines) + 1]
  local id, sig, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
  -- Unique per run and per pass over the file: every request is a new delivery.
  id = id .. "-" .. (os.getenv("RUN") or "0")
  if idx >= #lines then id = id .. "-r" .. math.floor(idx / #lines) end
  return wrk.format("POST", "/webhooks/github", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = id,
    ["X-Hub-Signature-256"] = sig,
  }, body)
end

function response(status, headers, body)
  if status == 202 or status == 200 then accepted = accepted + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local acc, oth = 0, 0
  for _, t in ipairs(threads) do
    acc = acc + t:get("accepted")
    oth = oth + t:get("other")
  end
  io.write(string.format("RESULT requests=%d accepted=%d other=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, acc, oth, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
