-- wrk script: agents enrolling. Every request enrols a new serial with the enrollment key in
-- ENROLLMENT_KEY, as `Bearer`; serials are unique per thread and request. wrk counts the answers
-- other than 2xx.
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local sent = 0

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("ENROLLMENT_KEY")
end

function request()
  sent = sent + 1
  local serial = string.format("LOAD-%d-%d", id, sent)
  return wrk.format(nil, nil, nil, '{"device_serial":"' .. serial .. '","device_name":"' .. serial .. '"}')
end
