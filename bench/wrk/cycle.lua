-- Full task cycles, one worker per wrk thread (one connection each, so a thread's state is its worker's):
-- claim -> progress -> PUT the frame -> complete, then claim again. 204 on claim: ask again.
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
require("common")
function setup(thread) bench_setup(thread) end

function init(args)
  bench_init()
  token = my_tokens(tonumber(os.getenv("WRK_THREADS")))[1]
  auth = "Bearer " .. token
  local f = io.open(os.getenv("WRK_FRAME"), "rb")
  frame_body = f:read("*a")
  f:close()
  frame_sha = os.getenv("WRK_FRAME_SHA")
  step = "claim"
end

local json = {["Content-Type"] = "application/json"}

function request()
  started = now_ms()
  local h = {["Authorization"] = auth, ["Content-Type"] = "application/json"}
  if step == "claim" then
    return wrk.format("POST", "/api/v1/worker/tasks/claim", h, "{}")
  elseif step == "progress" then
    return wrk.format("POST", "/api/v1/worker/tasks/" .. task_id .. "/progress", h, '{"progress": 0.5, "eta_s": 1}')
  elseif step == "put" then
    h["Content-Type"] = "image/png"
    h["X-Content-SHA256"] = frame_sha
    return wrk.format("PUT", "/api/v1/worker/tasks/" .. task_id .. "/outputs/" .. frame_name, h, frame_body)
  else
    return wrk.format("POST", "/api/v1/worker/tasks/" .. task_id .. "/complete", h, string.format(
      '{"outputs": [{"name": "%s", "sha256": "%s", "size": %d}], "compute_seconds": 1}',
      frame_name, frame_sha, #frame_body))
  end
end

function response(status, headers, body)
  record(step, status, started)
  if step == "claim" then
    if status == 200 then
      task_id = body:match('"id":%s*(%d+)')
      local frame = tonumber(body:match('"frames":%s*%[%s*(%d+)'))
      frame_name = string.format("frame_%04d.png", frame)
      step = "progress"
    end
  elseif status >= 400 then
    step = "claim"  -- the task is gone (or refused): ask for the next one
  elseif step == "progress" then step = "put"
  elseif step == "put" then step = "complete"
  else step = "claim" end
end

function delay() return paced_delay() end
