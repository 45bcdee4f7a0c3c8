-- wrk script: unconditional heartbeats on random acked items, each with one kind of credential.
--   wrk -s scripts/heartbeat_credentials.lua URL -- IDS_FILE MODE
-- IDS_FILE (scripts/bench_credentials.py): the environment id, the admin token and the
-- environment key on the first three lines, then one "work_id sessions_token" per line.
-- MODE: admin, key or secret (each item's own sessions_token).
-- Every request is formatted once, in init(), so wrk's own per-request work is the same small
-- pick whichever credential is sent (scripts/heartbeat.lua does the same).
local requests = {}

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open " .. tostring(args[1]))
  local env = file:read("*l")
  local admin, key = file:read("*l"), file:read("*l")
  local mode, bearer = args[2], nil
  if mode == "admin" then bearer = admin elseif mode == "key" then bearer = key end
  assert(bearer or mode == "secret", "MODE is admin, key or secret")
  for line in file:lines() do
    local id, token = line:match("^(%S+) (%S+)$")
    if id then
      local headers = { ["Authorization"] = "Bearer " .. (bearer or token) }
      requests[#requests + 1] =
        wrk.format("POST", "/v1/environments/" .. env .. "/work/" .. id .. "/heartbeat", headers)
    end
  end
  file:close()
  assert(#requests > 0, "no work ids in " .. args[1])
  math.randomseed(os.time() + tonumber(tostring(requests):sub(-6), 16))
end

function request()
  return requests[math.random(#requests)]
end
