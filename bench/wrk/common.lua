-- Shared by the bench scripts: wall-clock time through LuaJIT's FFI, one output file per wrk thread
-- ("<step> <status> <ms>" per response), and each thread's slice of the worker tokens.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")

function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local counter = 0
local threads = {}

function bench_setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  table.insert(threads, thread)
end

function bench_init()
  out = io.open(os.getenv("WRK_OUT") .. "/thread-" .. thread_id, "w")
  out:setvbuf("full")
end

function record(step, status, started)
  out:write(step, " ", status, " ", string.format("%.3f", now_ms() - started), "\n")
  if out_count == nil then out_count = 0 end
  out_count = out_count + 1
  if out_count % 200 == 0 then out:flush() end
end

-- Tokens of this thread: every thread_count-th line of WRK_TOKENS starting at its own index.
function my_tokens(thread_count)
  local mine, i = {}, 0
  for line in io.lines(os.getenv("WRK_TOKENS")) do
    if line ~= "" then
      if i % thread_count == (thread_id - 1) then table.insert(mine, line) end
      i = i + 1
    end
  end
  return mine
end

-- Pacing: WRK_INTERVAL_MS between one connection's requests (0: as fast as the server answers).
function paced_delay()
  return tonumber(os.getenv("WRK_INTERVAL_MS") or "0")
end
