-- wrk script: complete sign-ins through the flow executor (see scripts/load). Each connection
-- walks the default authentication flow: GET (opens the flow), identification, password. Run with
-- as many threads as connections, so each thread's state belongs to one connection.
local path = "/api/v3/flows/executor/default-authentication-flow/"
local identify = '{"component": "ak-stage-identification", "uid_field": "bench@example.com"}'
local password = '{"component": "ak-stage-password", "password": "load test passphrase, not a secret 9"}'
local step = 0
local cookie = ""
completed = 0
failed = 0

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function request()
  local headers = { ["Content-Type"] = "application/json", ["Cookie"] = cookie }
  if step == 0 then
    return wrk.format("GET", path, headers)
  elseif step == 1 then
    return wrk.format("POST", path, headers, identify)
  else
    return wrk.format("POST", path, headers, password)
  end
end

-- The flow cookie changes when the run is first stored (on the first answer): keep the latest.
local function take_flow_cookie(headers)
  local set = headers["Set-Cookie"] or headers["set-cookie"] or ""
  local value = set:match("^(gatehouse_flow=[^;]+)")
  if value then
    cookie = value
  end
end

function response(status, headers, body)
  if step == 0 then
    take_flow_cookie(headers)
    step = 1
  elseif step == 1 then
    take_flow_cookie(headers)
    step = 2
  else
    if status == 200 and body:find("xak-flow-redirect", 1, true) then
      completed = completed + 1
    else
      failed = failed + 1
    end
    step = 0
    cookie = ""
  end
end

function done(summary, latency, requests)
  local total, bad = 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("completed")
    bad = bad + thread:get("failed")
  end
  io.write(string.format("completed sign-ins: %d\nfailed sign-ins: %d\nsign-ins/s: %.1f\n", total, bad, total / (summary.duration / 1e6)))
end
