-- wrk script: agents checking in. Each request posts the report in FACTS (a JSON file) with the
-- next device key from DEVICE_KEYS (one per line), round robin, as `Bearer+agent`. wrk counts
-- the answers other than 2xx.
local keys = {}
local next_key = 1
local body = ""

function init(args)
  for line in io.lines(os.getenv("DEVICE_KEYS")) do
    if line ~= "" then
      table.insert(keys, line)
    end
  end
  local file = io.open(os.getenv("FACTS"), "r")
  body = file:read("*a")
  file:close()
  next_key = math.random(#keys)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local key = keys[next_key]
  next_key = next_key % #keys + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer+agent " .. key, ["Content-Type"] = "application/json" }, body)
end
