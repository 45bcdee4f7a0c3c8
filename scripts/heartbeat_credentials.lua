-- wrk script: unconditional heartbeats on random acked items, each with one kind of credential.
--   wrk -s scripts/heartbeat_credentials.lua URL -- IDS_FILE MODE
-- IDS_FILE (scripts/bench_credentials.py): the environment id, the admin token and the
-- environment key on the first three lines, then one "work_id sessions_token" per line.
-- MODE: admin, key or secret (each item's own sessions_token).
local env, ids, tokens, bearer, mode = nil, {}, {}, nil, nil

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open " .. tostring(args[1]))
  env = file:read("*l")
  local admin, key = file:read("*l"), file:read("*l")
  for line in file:lines() do
    local id, token = line:match("^(%S+) (%S+)$")
    if id then
      ids[#ids + 1] = id
      tokens[#tokens + 1] = token
    end
  end
  file:close()
  assert(#ids > 0, "no work ids in " .. args[1])
  mode = args[2]
  if mode == "admin" then bearer = admin elseif mode == "key" then bearer = key end
  assert(bearer or mode == "secret", "MODE is admin, key or secret")
  wrk.method = "POST"
  math.randomseed(os.time() + tonumber(tostring(ids):sub(-6), 16))
end

function request()
  local n = math.random(#ids)
  local headers = { ["Authorization"] = "Bearer " .. (bearer or tokens[n]) }
  return wrk.format(nil, "/v1/environments/" .. env .. "/work/" .. ids[n] .. "/heartbeat", headers)
end
