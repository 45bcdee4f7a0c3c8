-- wrk script: unconditional heartbeats on random acked items.
--   wrk -s scripts/heartbeat.lua URL -- IDS_FILE TOKEN
-- IDS_FILE: the environment id on the first line, then one work id per line (acked items).
-- Every request is formatted once, in init(), so wrk's own per-request work is the same small
-- pick for every target and credential (scripts/heartbeat_credentials.lua does the same).
local requests = {}

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open " .. tostring(args[1]))
  local env = file:read("*l")
  local headers = { ["Authorization"] = "Bearer " .. args[2] }
  for line in file:lines() do
    if line ~= "" then
      requests[#requests + 1] =
        wrk.format("POST", "/v1/environments/" .. env .. "/work/" .. line .. "/heartbeat", headers)
    end
  end
  file:close()
  assert(#requests > 0, "no work ids in " .. args[1])
  math.randomseed(os.time() + tonumber(tostring(requests):sub(-6), 16))
end

function request()
  return requests[math.random(#requests)]
end
