-- wrk script: complete multi-factor sign-ins through the flow executor (see scripts/load). Each
-- connection walks the default authentication flow: GET (opens the flow), identification,
-- password, then an authenticator app's code at the validation stage. The accounts and codes
-- come from the file MFA_CODES names (written by scripts/mfa_enrol.py): each code signs in
-- once, so each thread takes its own share. Run with as many threads as connections.
local path = "/api/v3/flows/executor/default-authentication-flow/"
local password = '{"component": "ak-stage-password", "password": "load test passphrase, not a secret 9"}'
local pairs_of_thread = {}
local next_pair = 1
local step = 0
local cookie = ""
completed = 0
failed = 0
exhausted = 0

local threads = {}
local thread_count = 0
function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local count = #threads
  local index = 0
  for line in io.lines(os.getenv("MFA_CODES")) do
    if index % (os.getenv("MFA_THREADS") + 0) == id then
      local email, code = line:match("^(%S+) (%S+)$")
      table.insert(pairs_of_thread, { email = email, code = code })
    end
    index = index + 1
  end
end

function request()
  local headers = { ["Content-Type"] = "application/json", ["Cookie"] = cookie }
  local pair = pairs_of_thread[next_pair]
  if pair == nil then
    -- Out of codes: ask for something cheap and count it, so the figure stays honest.
    exhausted = exhausted + 1
    return wrk.format("GET", "/-/health/live/")
  end
  if step == 0 then
    return wrk.format("GET", path, headers)
  elseif step == 1 then
    return wrk.format("POST", path, headers, '{"component": "ak-stage-identification", "uid_field": "' .. pair.email .. '"}')
  elseif step == 2 then
    return wrk.format("POST", path, headers, password)
  else
    return wrk.format("POST", path, headers, '{"component": "ak-stage-authenticator-validate", "code": "' .. pair.code .. '"}')
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
  if pairs_of_thread[next_pair] == nil then
    return
  end
  if step < 3 then
    take_flow_cookie(headers)
    step = step + 1
  else
    if status == 200 and body:find("xak-flow-redirect", 1, true) then
      completed = completed + 1
    else
      failed = failed + 1
    end
    step = 0
    cookie = ""
    next_pair = next_pair + 1
  end
end

function done(summary, latency, requests)
  local total, bad, out = 0, 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("completed")
    bad = bad + thread:get("failed")
    out = out + thread:get("exhausted")
  end
  io.write(string.format("completed sign-ins: %d\nfailed sign-ins: %d\nrequests after the codes ran out: %d\nsign-ins/s: %.1f\n",
    total, bad, out, total / (summary.duration / 1e6)))
end
