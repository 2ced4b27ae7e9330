-- wrk script: GET /api/v3/core/users/me/ with each request carrying the next of many API keys
-- (one per line in the file KEYS names), as many clients of one server do (see scripts/load).
-- Each thread starts at its own place in the list.
local keys = {}
local next_key = 1
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("KEYS")) do
    table.insert(keys, line)
  end
  next_key = (id * 7) % #keys + 1
end

function request()
  local key = keys[next_key]
  next_key = next_key % #keys + 1
  return wrk.format("GET", "/api/v3/core/users/me/", { ["Authorization"] = "Bearer " .. key })
end
