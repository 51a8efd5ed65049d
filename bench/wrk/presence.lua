-- Idle presence of a large network: each request is the next worker's (round-robin over this thread's
-- tokens) heartbeat or idle claim, mixed in the ratio of the intervals the portal advises
-- (WRK_HEARTBEAT_S, WRK_POLL_S).
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
require("common")
function setup(thread) bench_setup(thread) end

function init(args)
  bench_init()
  tokens = my_tokens(tonumber(os.getenv("WRK_THREADS")))
  next_token = 1
  local hb, poll = tonumber(os.getenv("WRK_HEARTBEAT_S")), tonumber(os.getenv("WRK_POLL_S"))
  heartbeat_share = (1 / hb) / (1 / hb + 1 / poll)
  math.randomseed(thread_id * 7919)
end

function request()
  started = now_ms()
  local token = tokens[next_token]
  next_token = next_token % #tokens + 1
  local h = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
  if math.random() < heartbeat_share then
    step = "heartbeat"
    return wrk.format("POST", "/api/v1/worker/heartbeat", h, '{"state": "idle"}')
  end
  step = "claim"
  return wrk.format("POST", "/api/v1/worker/tasks/claim", h, "{}")
end

function response(status, headers, body) record(step, status, started) end
function delay() return paced_delay() end
