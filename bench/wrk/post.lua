-- wrk script: POST one JSON hook body, each request with the next token of a pool.
--
-- Environment:
--   BENCH_BODY    file with the JSON body to post
--   BENCH_TOKENS  file with one bearer token per line (distinct jti: replay protection
--                 rejects reuse); threads take every n-th line so no two share a token.
--                 Empty or unset: no Authorization header.
--   BENCH_THREADS the -t given to wrk (threads start before all are set up, so the script
--                 cannot count them itself).
-- At the end, one line "BENCH_JSON {...}" with throughput and latency percentiles (µs).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

function init(args)
  body = read_file(os.getenv("BENCH_BODY"))
  tokens = {}
  local total = tonumber(os.getenv("BENCH_THREADS") or "1")
  local path = os.getenv("BENCH_TOKENS")
  if path and path ~= "" then
    local i = 0
    for line in io.lines(path) do
      if line ~= "" then
        if i % total == id then
          table.insert(tokens, line)
        end
        i = i + 1
      end
    end
  end
  next_token = 1
  headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json"}
end

function request()
  local n = #tokens
  if n > 0 then
    headers["Authorization"] = "Bearer " .. tokens[next_token]
    next_token = next_token + 1
    if next_token > n then
      next_token = 1 -- pool exhausted: reuse shows up as non-2xx (replay), never silently
    end
  end
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
end
