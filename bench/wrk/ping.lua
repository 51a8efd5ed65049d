-- The bare ceiling: one small JSON POST, as fast as the server answers.
package.path = os.getenv("WRK_DIR") .. "/?.lua;" .. package.path
require("common")
function setup(thread) bench_setup(thread) end
function init(args) bench_init() end
function request()
  started = now_ms()
  return wrk.format("POST", "/ping", {["Content-Type"] = "application/json"}, "{}")
end
function response(status, headers, body) record("ping", status, started) end
