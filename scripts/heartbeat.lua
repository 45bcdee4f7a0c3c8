-- wrk script: unconditional heartbeats on random acked items.
--   wrk -s scripts/heartbeat.lua URL -- IDS_FILE TOKEN
-- IDS_FILE: the environment id on the first line, then one work id per line (acked items).
local env, ids = nil, {}

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open " .. tostring(args[1]))
  env = file:read("*l")
  for line in file:lines() do
    if line ~= "" then ids[#ids + 1] = line end
  end
  file:close()
  assert(#ids > 0, "no work ids in " .. args[1])
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
  math.randomseed(os.time() + tonumber(tostring(ids):sub(-6), 16))
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format(nil, "/v1/environments/" .. env .. "/work/" .. id .. "/heartbeat")
end
