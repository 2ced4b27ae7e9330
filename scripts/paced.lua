-- wrk script: each connection waits PACE_MS between requests (see scripts/load), and the
-- 99th-percentile latency is printed.
local pace = tonumber(os.getenv("PACE_MS") or "0")

function delay()
  return pace
end

done = function(summary, latency, requests)
  io.write(string.format("p99_ms: %.3f\n", latency:percentile(99.0) / 1000))
  io.write(string.format("rate: %.1f\n", summary.requests / (summary.duration / 1000000)))
end
