-- wrk script of rtb-load: POSTs the request bodies in turn (one file per body, given after --)
-- and prints one machine-readable line at the end: `WRKJSON {...}` with the request count,
-- error classes and the latency percentiles (ms) the report and its plots use.
-- Usage: wrk -t1 ... -s load-wrk.lua <url> -- <file> [<file> ...]
local bodies = {}
local index = 0

-- Percentiles printed; the plots read them as the closed-loop latency curve.
local PERCENTILES = { 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999 }

-- The request headers: the JSON content type plus every `-H` given to wrk (wrk.format uses
-- only the table it is handed, so -H would otherwise be dropped).
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  for _, path in ipairs(args) do
    local file = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = file:read("*a")
    file:close()
  end
  assert(#bodies > 0, "give at least one body file after --")
end

-- RTB_WRK_DELAY_MS paces each connection (a pause before each request): a rate below the
-- closed loop's maximum, for latency at a given load (closed loop still: a slow answer delays
-- that connection's next request).
local DELAY_MS = tonumber(os.getenv("RTB_WRK_DELAY_MS") or "")
if DELAY_MS then
  function delay()
    return DELAY_MS
  end
end

function request()
  index = index % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[index])
end

function done(summary, latency, requests)
  local parts = {}
  for _, p in ipairs(PERCENTILES) do
    parts[#parts + 1] = string.format('"%s":%.3f', tostring(p), latency:percentile(p) / 1000)
  end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,'
      .. '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"max_ms":%.3f,'
      .. '"mean_ms":%.3f,"percentiles_ms":{%s}}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency.max / 1000, latency.mean / 1000, table.concat(parts, ",")))
end
