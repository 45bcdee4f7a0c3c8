-- wrk script: reads of random items (GET /v1/environments/ENV/work/ID), each a linearizable
-- read in a cluster (the leader confirms it leads first).
--   wrk -s scripts/retrieve.lua URL -- IDS_FILE TOKEN
-- IDS_FILE: as scripts/heartbeat.lua's (the environment id, then one work id per line).
-- Every request is formatted once, in init(), as scripts/heartbeat.lua does.
local requests = {}

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open " .. tostring(args[1]))
  local env = file:read("*l")
  local headers = { ["Authorization"] = "Bearer " .. args[2] }
  for line in file:lines() do
    if line ~= "" then
      requests[#requests + 1] =
        wrk.format("GET", "/v1/environments/" .. env .. "/work/" .. line, headers)
    end
  end
  file:close()
  assert(#requests > 0, "no work ids in " .. args[1])
  math.randomseed(os.time() + tonumber(tostring(requests):sub(-6), 16))
end

function request()
  return requests[math.random(#requests)]
end
