-- wrk script of the load benchmark (run.sh). Reads the request from the
-- environment so one script serves every scenario:
--   WRK_METHOD  GET (default) or POST
--   WRK_BODY    request body (sent as application/json)
--   WRK_BEARER  access token sent as "Authorization: Bearer ..."
-- and prints one machine-readable line at the end:
--   RESULT rps=... p50_us=... p99_us=... requests=... errors=... non2xx=...
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

function done(summary, latency, requests)
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.requests, socket + e.status, e.status))
end
