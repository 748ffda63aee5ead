-- wrk script of benches/users-1m/run.sh. The request comes from the
-- environment:
--   WRK_METHOD  GET (default) or POST
--   WRK_BODY    request body (sent as application/json)
--   WRK_BEARER  access token sent as "Authorization: Bearer ..."
--   WRK_PATHS   paths separated by "|", requested in turn (default: the URL's)
-- and one line is printed at the end:
--   RESULT rps=... p50_us=... p99_us=... max_us=... requests=... errors=... non2xx=...
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
local bearer = os.getenv("WRK_BEARER")
if bearer ~= nil and bearer ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. bearer
end

local paths = {}
for p in string.gmatch(os.getenv("WRK_PATHS") or "", "[^|]+") do
  paths[#paths + 1] = p
end
local i = 0

function init(args)
  i = math.random(0, 1000)
end

function request()
  if #paths == 0 then
    return wrk.format()
  end
  i = i + 1
  return wrk.format(nil, paths[(i % #paths) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d max_us=%d requests=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    summary.requests, socket + e.status, e.status))
end
