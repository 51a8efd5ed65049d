"""The engine's loop against a fake portal and a fake runner: fast checks of every rule in the brief."""

import dataclasses
import hashlib
import json
import subprocess
import sys
import threading
import time

import pytest

from tray_client import config
from tray_client.api import PortalError
from tray_client.engine import (EXIT_ALREADY_RUNNING, EXIT_AUTH, EXIT_OK, EXIT_TASK_FAILED, RESTART_REASON,
                                SHUTDOWN_REASON, Engine, EngineState)
from tray_client.outbox import Outbox
from tray_client.runners import UnknownJobType
from tray_client.runners.base import InvalidParams, Progress, RunFailed, RunResult
from tests.tray_client.portal_fixture import FakeClient, wait_for

BLEND = b"BLENDER-v304 fake scene"
SHA = hashlib.sha256(BLEND).hexdigest()


def task(task_id, mode="ok", job_type="fake", inputs=None):
    return {"id": task_id, "job_id": 10, "type": job_type, "params": {"mode": mode},
            "inputs": inputs if inputs is not None else [
                {"name": "scene.blend", "sha256": SHA, "size": len(BLEND),
                 "url": f"http://127.0.0.1:9/api/v1/worker/tasks/{task_id}/inputs/scene.blend"}],
            "reward_estimate": "0.002000", "software": "Fake 1.0", "lease_expires_at": None}


class FakeRunner:
    """Modes: ok, fail, slow (until told to stop), nearly (97 % then finishes), outage (portal drops)."""

    runs: list = []
    client: FakeClient | None = None

    def __init__(self, settings=None):
        self.settings = settings

    def validate(self, params):
        if not isinstance(params, dict) or params.get("mode") not in ("ok", "fail", "slow", "nearly", "outage"):
            raise InvalidParams("mode must be one of ok, fail, slow, nearly, outage")
        return params

    def run(self, params, inputs, workdir, on_progress=None, should_stop=None):
        FakeRunner.runs.append((params["mode"], {k: v.read_bytes() for k, v in inputs.items()}))
        mode = params["mode"]
        if mode == "fail":
            raise RunFailed("render_error", "Blender could not render the scene: boom", "last lines")
        if mode in ("slow", "nearly", "outage"):
            if mode == "outage":
                FakeRunner.client.unreachable = True
            fraction = 0.97 if mode == "nearly" else 0.1
            deadline = time.monotonic() + (0.4 if mode != "slow" else 20)
            while time.monotonic() < deadline:
                on_progress(Progress(fraction, 600.0 if mode == "slow" else 5.0, "rendering"))
                if mode == "slow" and should_stop():
                    raise RunFailed("canceled", "stopped")
                time.sleep(0.02)
        on_progress(Progress(1.0, 0.0, "done"))
        out = workdir / "frame_0001.png"
        out.write_bytes(b"PNG of " + inputs["scene.blend"].read_bytes())
        return RunResult([out], "rendered", 1.25)


def factory(job_type, settings=None):
    if job_type != "fake":
        raise UnknownJobType(job_type)
    return FakeRunner(settings)


def probe(*_args, **_kwargs):
    return {"gpus": [], "cpu": {"brand": "Test CPU", "cores": 2}, "ram_mb": 2048, "os": "Linux",
            "hostname": "node", "disk_free_mb": 10000,
            "renderers": {"blender": {"version": "3.4.1", "path": "/usr/bin/blender"},
                          "realesrgan": {"version": "2.0.0"}}}


@pytest.fixture
def cfg(tmp_path):
    cfg = config.WorkerConfig(path=tmp_path / "worker.json", data_dir=tmp_path / "data",
                              server_url="http://127.0.0.1:9", worker_id=1, token="pwk_test")
    cfg.settings.update(auto_benchmark=False, auto_speedtest=False)
    cfg.save()
    return cfg


@pytest.fixture
def client():
    c = FakeClient(files={"scene.blend": BLEND})
    FakeRunner.runs = []
    FakeRunner.client = c
    return c


def make_engine(cfg, client, **kwargs):
    kwargs.setdefault("probe", probe)
    return Engine(cfg, client=client, runner_factory=factory, progress_interval=0.05,
                  idle_backoff=(0.01, 0.05), **kwargs)


def run_in_thread(engine):
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    return thread


def wait_until(predicate):
    """The fake portal answers at once: poll fast, give up after 10 s."""
    return wait_for(predicate, timeout=10.0, interval=0.01)


def test_a_task_is_downloaded_run_uploaded_and_completed(cfg, client):
    client.tasks = [task(1)]
    events = []
    engine = make_engine(cfg, client, on_event=events.append)
    assert engine.run(once=True) == EXIT_OK
    names = client.names()
    assert names[:3] == ["hello", "claim", "download"]
    assert names.index("upload") < names.index("complete")
    assert client.uploaded[(1, "frame_0001.png")] == b"PNG of " + BLEND
    complete = next(c for c in client.calls if c[0] == "complete")
    assert complete[2] == [{"name": "frame_0001.png", "sha256": hashlib.sha256(b"PNG of " + BLEND).hexdigest(),
                            "size": len(b"PNG of " + BLEND)}]
    snap = engine.snapshot()
    assert snap.task_id is None and snap.tasks_completed == 1 and snap.earned_session == "0.001000"
    kinds = [e["kind"] for e in events]
    assert "task_started" in kinds and "task_finished" in kinds
    started = next(e for e in events if e["kind"] == "task_started")["state"]
    assert (started.state, started.job_id, started.task_id, started.reward_estimate) == \
        ("busy", 10, 1, "0.002000")
    assert not (cfg.work_dir / "task-1").exists() and not cfg.state_path.exists()


def test_the_state_is_an_immutable_value_and_the_status_file_is_its_json(cfg, client):
    client.tasks = [task(1)]
    engine = make_engine(cfg, client)
    before = engine.snapshot()
    engine.run(once=True)
    after = engine.snapshot()
    assert before.tasks_completed == 0 and after.tasks_completed == 1  # a snapshot never changes later
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.paused = True
    # What `pictor-worker status` reads: the state's fields as plain JSON, plus the writer's pid and time.
    doc = json.loads((cfg.data_dir / "status.json").read_text())
    assert set(doc) == {f.name for f in dataclasses.fields(EngineState)} | {"pid", "updated_at"}
    assert (doc["state"], doc["message"], doc["benchmark"], doc["job_types"]) == \
        ("offline", "stopped", "idle", ["render", "upscale", "verify", "benchmark"])
    assert EngineState.from_dict(doc) == after


def test_hello_reports_hardware_capabilities_and_compliance(cfg, client):
    engine = make_engine(cfg, client)
    engine.run(once=True)
    report = client.calls[0][1]
    assert report["capabilities"] == {"job_types": ["render", "upscale", "verify", "benchmark"], "gpu": False, "devices": ["CPU"]}
    assert report["cpu"] == "Test CPU" and report["ram_mb"] == 2048 and report["state"] == "idle"
    checks = {c["check"]: c["status"] for c in report["compliance"]}
    assert checks["credentials_file"] == "pass" and checks["server_connection"] == "pass"
    assert set(checks) >= {"app_version", "renderer_hardening", "not_admin", "free_disk", "gpu_driver"}


def test_a_second_task_of_the_same_job_downloads_nothing(cfg, client):
    client.tasks = [task(1), task(2)]
    engine = make_engine(cfg, client)
    engine.on_event = lambda e: e["state"].tasks_completed == 2 and engine.stop()
    engine.run()
    assert client.names().count("download") == 1
    assert [r[1]["scene.blend"] for r in FakeRunner.runs] == [BLEND, BLEND]
    assert client.names().count("complete") == 2


@pytest.mark.parametrize("bad, words", [
    (task(1, job_type="mine-bitcoin"), "cannot run 'mine-bitcoin' jobs"),
    (task(1, mode="rm -rf /"), "mode must be one of"),
])
def test_unknown_job_types_and_bad_params_fail_for_good_and_run_nothing(cfg, client, bad, words):
    client.tasks = [bad]
    assert make_engine(cfg, client).run(once=True) == EXIT_TASK_FAILED
    fail = next(c for c in client.calls if c[0] == "fail")
    assert words in fail[2] and fail[3] is False
    assert FakeRunner.runs == [] and "download" not in client.names()


def test_a_renderer_failure_is_reported_with_its_kind_and_log(cfg, client):
    client.tasks = [task(1, mode="fail")]
    engine = make_engine(cfg, client)
    assert engine.run(once=True) == EXIT_TASK_FAILED
    assert ("fail", 1, "Blender could not render the scene: boom", False, "render_error") in client.calls
    assert "boom" in engine.snapshot().last_error


def test_keep_running_false_stops_the_runner_and_reports_nothing(cfg, client):
    client.tasks = [task(1, mode="slow")]
    engine = make_engine(cfg, client)
    thread = run_in_thread(engine)
    wait_until(lambda: "progress" in client.names())
    client.keep_running = False  # the creator canceled the job
    wait_until(lambda: not thread.is_alive() or engine.snapshot().task_id is None)
    engine.stop()
    thread.join(10)
    assert not thread.is_alive()  # the 20 s render did not run to its end
    assert "complete" not in client.names() and "fail" not in client.names()
    assert "hand_back" not in client.names()


def test_updates_wait_on_disk_through_an_outage_and_replay_when_the_portal_returns(cfg, client):
    client.tasks = [task(1, mode="outage")]  # the portal drops as the render starts
    engine = make_engine(cfg, client)
    engine.run(once=True)
    assert engine.snapshot().outbox_pending == 1
    box = Outbox(cfg.outbox_path)
    assert [e.kind for e in box.pending()] == ["complete"]  # queued progress was superseded
    box.close()
    assert "complete" not in client.names()

    client.unreachable = False
    calls_before = len(client.calls)
    assert make_engine(cfg, client).run(once=True) == EXIT_OK  # the next start delivers it
    after = client.names()[calls_before:]
    assert after[:3] == ["hello", "upload", "complete"] and after[3] == "claim"


def test_a_task_running_when_the_app_died_is_reported_failed_and_its_renderer_stopped(cfg, client):
    cfg.ensure_dirs()
    cfg.state_path.write_text(json.dumps({"task_id": 42, "job_id": 10}))
    leftover_dir = cfg.work_dir / "task-42"
    leftover_dir.mkdir(parents=True)
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=leftover_dir,
                                start_new_session=True)
    try:
        make_engine(cfg, client).run(once=True)
        assert leftover.wait(timeout=5) != 0  # killed, not left rendering for nobody
    finally:
        if leftover.poll() is None:
            leftover.kill()
    assert ("fail", 42, RESTART_REASON, True, "crash") in client.calls
    assert client.names().index("fail") < client.names().index("claim")
    assert not cfg.state_path.exists() and not leftover_dir.exists()


def test_stop_hands_the_current_task_back(cfg, client):
    client.tasks = [task(1, mode="slow")]
    engine = make_engine(cfg, client)
    thread = run_in_thread(engine)
    wait_until(lambda: engine.snapshot().progress > 0)
    engine.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert ("hand_back", 1, SHUTDOWN_REASON) in client.calls
    assert "complete" not in client.names()


def test_stop_lets_a_nearly_done_task_finish(cfg, client):
    client.tasks = [task(1, mode="nearly")]
    engine = make_engine(cfg, client)
    thread = run_in_thread(engine)
    wait_until(lambda: engine.snapshot().progress >= 0.97)
    engine.stop()
    thread.join(10)
    assert "complete" in client.names() and "hand_back" not in client.names()


@pytest.mark.parametrize("advised, waits", [(5.0, 5.0), (2, 2.0), (0.01, 1.0), (-3, 1.0), (1e9, 300.0),
                                             (float("nan"), 300.0)])
def test_idle_claims_follow_the_portals_advised_interval_within_bounds(cfg, client, advised, waits):
    """The portal sizes its advice to the network (presence.advised_intervals): the app asks exactly that
    often, never more than once a second and never less than once in five minutes."""
    delays = []
    engine = Engine(cfg, client=client, probe=probe, runner_factory=factory, idle_backoff=(1.0, 30.0))

    def sleep(seconds):
        delays.append(seconds)
        if len(delays) == 7:
            engine.stop()
    engine._sleep = sleep
    client.retry_after = advised
    engine.run()
    assert delays == [waits] * 7


def test_idle_claims_back_off_without_advice(cfg, client):
    delays = []
    client.retry_after = None
    engine = Engine(cfg, client=client, probe=probe, runner_factory=factory, idle_backoff=(1.0, 30.0))
    engine._sleep = lambda s: (delays.append(s), len(delays) == 7 and engine.stop())
    engine.run()
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_paused_engine_claims_nothing(cfg, client):
    client.tasks = [task(1)]
    engine = make_engine(cfg, client)
    engine.pause()
    engine._sleep = lambda s: engine.stop()
    engine.run()
    assert "claim" not in client.names()
    assert engine.snapshot().paused is True


def test_a_missing_renderer_is_an_error_state_with_a_message(cfg, client):
    engine = make_engine(cfg, client, probe=lambda *a: {**probe(), "renderers": {}})
    engine.run(once=True)
    hello = client.calls[0][1]
    assert hello["state"] == "error" and "Blender not found" in hello["message"]
    assert hello["capabilities"]["job_types"] == []
    engine.heartbeat()
    beat = next(c[1] for c in client.calls if c[0] == "heartbeat")
    assert beat["state"] == "error" and "Blender not found" in beat["message"]


def test_a_missing_optional_runner_is_a_note_and_the_worker_stays_idle(cfg, client):
    """`pip install -e .` leaves Real-ESRGAN out: the worker still renders, so it is not an error."""
    found = probe()
    engine = make_engine(cfg, client, probe=lambda *a: {**found, "renderers": {"blender": found["renderers"]["blender"]}})
    engine.run(once=True)
    hello = client.calls[0][1]
    assert hello["state"] == "idle" and "Real-ESRGAN is not installed" in hello["message"]
    assert "upscale" not in hello["capabilities"]["job_types"] and "render" in hello["capabilities"]["job_types"]
    snap = engine.snapshot()
    assert snap.error is None and snap.state != "error" and "Upscale jobs are not offered" in snap.note
    engine.heartbeat()
    beat = next(c[1] for c in client.calls if c[0] == "heartbeat")
    assert beat["state"] == "idle" and "Real-ESRGAN" in beat["message"]


def test_an_input_that_keeps_arriving_corrupted_fails_the_task(cfg, client):
    client.files["scene.blend"] = b"X" * len(BLEND)  # the announced size, not the announced bytes
    client.tasks = [task(1)]
    make_engine(cfg, client).run(once=True)
    assert client.names().count("download") == 2
    fail = next(c for c in client.calls if c[0] == "fail")
    assert "SHA-256" in fail[2] and fail[3] is True and fail[4] == "bad_input"
    assert FakeRunner.runs == []


def test_a_refused_token_stops_the_engine_with_a_clear_error(cfg, client):
    client.refuse["hello"] = PortalError(401, "unauthorized", "This worker token is unknown")
    engine = make_engine(cfg, client)
    assert engine.run() == EXIT_AUTH
    assert "pair the worker again" in engine.snapshot().error


def test_only_one_engine_per_data_folder(cfg, client):
    first = make_engine(cfg, client)
    assert first._instance_lock.acquire()
    try:
        assert make_engine(cfg, client).run(once=True) == EXIT_ALREADY_RUNNING
    finally:
        first._instance_lock.release()


def test_set_bid_validates_and_syncs(cfg, client):
    engine = make_engine(cfg, client)
    with pytest.raises(ValueError):
        engine.set_bid("-1")
    with pytest.raises(ValueError):
        engine.set_bid("lots")
    engine.set_bid("0.75")
    assert ("update_settings", {"bid": "0.75"}) in client.calls
    assert engine.snapshot().bid == "0.75" and engine.snapshot().average_bid == "0.450000"


def test_the_first_start_benchmarks_when_the_portal_has_no_score(cfg, client, monkeypatch):
    from tray_client import bench
    ran = []

    def fake_bench(client_, cfg_, gpu_backend=None, repeat=1):
        ran.append(client.names()[-1])  # what had happened just before
        client_.benchmark(1234, {})
        return {"score": 1234, "details": {}, "answer": {"bench_score": None}}
    monkeypatch.setattr(bench, "run_and_post", fake_bench)
    cfg.settings["auto_benchmark"] = True
    original = client.hello
    client.hello = lambda report: {**original(report), "bench_score": None}
    engine = make_engine(cfg, client)
    engine.run(once=True)
    assert ran == ["hello"] and client.names()[:3] == ["hello", "benchmark", "claim"]
    # The machine's own figure is kept as reported; the score stays the portal's (none yet).
    assert (engine.snapshot().bench_score_reported, engine.snapshot().bench_score) == (1234, None)


def test_an_input_name_with_a_path_is_refused_before_any_download(cfg, client):
    bad = task(1, inputs=[{"name": "../../.bashrc", "sha256": SHA, "size": len(BLEND),
                           "url": "http://127.0.0.1:9/x"}])
    client.tasks = [bad]
    make_engine(cfg, client).run(once=True)
    fail = next(c for c in client.calls if c[0] == "fail")
    assert "not a plain file name" in fail[2] and fail[3] is False
    assert "download" not in client.names() and FakeRunner.runs == []
    assert not (cfg.data_dir.parent / ".bashrc").exists()


def test_the_benchmark_status_is_part_of_the_state(cfg, client, monkeypatch):
    from tray_client import bench
    outcomes = [RuntimeError("Blender crashed while rendering the benchmark scene"), 1234]
    seen = []

    def fake_bench(client_, cfg_, gpu_backend=None, repeat=1):
        seen.append(engine.snapshot().benchmark)  # what a UI sees while it runs
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {"score": outcome, "details": {}, "answer": {"bench_score": 1000}}
    monkeypatch.setattr(bench, "run_and_post", fake_bench)
    events = []
    engine = make_engine(cfg, client, on_event=events.append)
    assert engine.snapshot().benchmark == "idle"
    engine.request_benchmark()
    assert engine.snapshot().benchmark == "queued"  # at once: the UI can show it before the loop runs
    engine.run(once=True)
    snap = engine.snapshot()
    assert seen == ["running"]
    assert snap.benchmark == "failed" and "Blender crashed" in snap.benchmark_error
    assert snap.bench_score == 1000  # the portal's score from hello is kept

    events.clear()
    engine.request_benchmark()
    assert engine.snapshot().benchmark_error is None
    engine.run(once=True)
    statuses = [e["state"].benchmark for e in events]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "done"
    done = next(e["state"] for e in events if e["state"].benchmark == "done")
    # The figure and the status together; the portal's score (what prices) is not replaced by it.
    assert (done.bench_score_reported, done.bench_score, done.benchmark_error) == (1234, 1000, None)


def blender_probe(data_dir=None, blender_path=None):
    """Blender is found only where the provider points (as when it is installed somewhere unusual)."""
    found = probe()
    renderers = {"realesrgan": found["renderers"]["realesrgan"]}
    if blender_path == "/opt/blender/blender":
        renderers["blender"] = {"version": "3.4.1", "path": blender_path}
    return {**found, "renderers": renderers}


def test_choosing_blender_clears_the_error_and_tells_the_portal_without_a_restart(cfg, client):
    engine = make_engine(cfg, client, probe=blender_probe)
    thread = run_in_thread(engine)
    try:
        wait_until(lambda: engine.snapshot().message == "waiting for work")
        assert "Blender not found" in engine.snapshot().error and engine.snapshot().state == "error"
        assert engine.snapshot().job_types == ("upscale",)

        engine.set_blender_path("/opt/blender/blender").join(10)
        snap = engine.snapshot()
        assert snap.error is None and snap.state == "idle" and snap.job_types == ("render", "upscale", "verify", "benchmark")
        hello = [c[1] for c in client.calls if c[0] == "hello"][-1]
        assert hello["capabilities"]["job_types"] == ["render", "upscale", "verify", "benchmark"]
        assert (hello["state"], hello["message"]) == ("idle", "waiting for work")  # not "just started"
        assert hello["renderers"]["blender"]["path"] == "/opt/blender/blender"
        assert config.load(cfg.path).settings["blender_path"] == "/opt/blender/blender"  # saved

        # Another kind of error is not the renderer's to clear; a hello during a task says busy.
        engine._update(error="disk full at /data: free space or lower the cache size", task_id=7)
        engine.refresh_hello().join(10)
        assert engine.snapshot().error.startswith("disk full")
        assert [c[1] for c in client.calls if c[0] == "hello"][-1]["state"] == "busy"
        engine._update(error=None, task_id=None)

        # Pointed somewhere wrong again: the error is back, and a portal that is down gets it later.
        client.unreachable = True
        refresh = engine.set_blender_path("/nowhere/blender")
        wait_until(lambda: "Blender not found at /nowhere/blender" in (engine.snapshot().error or ""))
        hellos = client.names().count("hello")
        client.unreachable = False
        refresh.join(10)
        assert client.names().count("hello") == hellos + 1
        assert [c[1] for c in client.calls if c[0] == "hello"][-1]["capabilities"]["job_types"] == ["upscale"]
    finally:
        engine.stop()
        thread.join(10)
