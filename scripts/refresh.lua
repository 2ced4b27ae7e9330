-- wrk script: refresh-token grants. Each thread takes its share of the refresh tokens in
-- REFRESH_TOKENS (one per line, at least one per connection) and sends each answer's new refresh
-- token in a later request, since every refresh token is good once. wrk counts the answers other
-- than 2xx.
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local queue = {}

function init(args)
  local count = tonumber(os.getenv("THREADS") or "2")
  local index = 0
  for line in io.lines(os.getenv("REFRESH_TOKENS")) do
    if line ~= "" and index % count == (id - 1) then
      table.insert(queue, line)
    end
    index = index + 1
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = os.getenv("CLIENT_AUTH")
end

function request()
  local token = table.remove(queue, 1) or "none-left"
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if status == 200 and token then
    table.insert(queue, token)
  end
end
