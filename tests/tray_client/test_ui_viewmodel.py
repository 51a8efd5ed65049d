"""The desktop UI's view model and controller: driven by a real engine against a real portal, with the
pure rules (bid, mining config, idle, autostart) checked against the portal's own."""

import json
import time
from decimal import Decimal

import pytest

from tray_client import config as config_mod
from tray_client.engine import Engine, EngineState
from tray_client.ui import system
from tray_client.ui.viewmodel import (Controller, InvalidInput, ViewModel, bid_comparison, duration_text,
                                      parse_bid, price_per_bench_hour, usd, validate_mining)
from webapp.services import ServiceError
from webapp.services.market import parse_mining_config, price_per_bench_hour_micros

from .portal_fixture import pair_worker
from .ui_helpers import shared_portal, worker_settings


@pytest.fixture(scope="module")
def portal(request, tmp_path_factory):
    return shared_portal(request, tmp_path_factory)


def pump_until(controller, predicate, timeout=60.0, what="condition"):
    """Drain like Tk's after() loop would, until predicate(vm) holds; returns the notifications seen."""
    notes = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notes += controller.drain()
        if predicate(controller.vm):
            return notes
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; view model state: {controller.vm.snapshot}")


# --- pure rules ------------------------------------------------------------------------------------

def test_bid_parsing_and_price_match_the_portal():
    assert parse_bid(" $0,45 ") == Decimal("0.45")
    for bad in ("", "abc", "0", "-1", "100.01", "0.1234567", "NaN"):
        with pytest.raises(InvalidInput):
            parse_bid(bad)
    for bid, score in [("0.5", 1000), ("0.333333", 1234), ("2", 700), ("0.000001", 9999), ("100", 1)]:
        micros = price_per_bench_hour_micros(int(Decimal(bid) * 1_000_000), score)
        assert price_per_bench_hour(Decimal(bid), score) == Decimal(micros) / 1_000_000
    assert price_per_bench_hour(Decimal("0.5"), None) == Decimal("0.5")  # unbenched: priced as 1000
    assert "below" in bid_comparison(Decimal("0.40"), Decimal("0.50"))
    assert "above" in bid_comparison(Decimal("0.60"), Decimal("0.50"))
    assert usd("0.500000") == "$0.50" and usd("0.000417") == "$0.000417" and usd("0.0125") == "$0.0125"
    assert duration_text(3725) == "1 h 02 min" and duration_text(65) == "1 min 05 s"
    assert duration_text(None) == "—"


@pytest.mark.parametrize("fields", [
    dict(pool="stratum+tcp://pool.example.com:4444", coin="etc", wallet="0xABC", extra="--intensity 20",
         enabled=True),
    dict(pool="pool.example.com:3333", coin="RVN", wallet="", extra="", enabled=False),
    dict(pool="no port here", coin="ETC", wallet="w", extra="", enabled=False),
    dict(pool="", coin="not a coin!", wallet="", extra="", enabled=False),
    dict(pool="", coin="", wallet="bad wallet", extra="", enabled=False),
    dict(pool="", coin="ETC", wallet="", extra="", enabled=True),  # enabled needs pool, coin and wallet
    dict(pool="", coin="", wallet="", extra="line\nbreak", enabled=False),
])
def test_mining_validation_agrees_with_the_portal(fields):
    try:
        ours = validate_mining(**fields)
    except InvalidInput:
        ours = None
    try:
        theirs = parse_mining_config(dict(fields))
    except ServiceError:
        theirs = None
    assert ours == theirs


def test_idle_rule_only_undoes_its_own_pause():
    decide = system.idle_decision
    assert decide(True, 10, 300, paused=False, paused_by_idle=False) == "pause"  # someone is typing
    assert decide(True, 400, 300, paused=True, paused_by_idle=True) == "resume"  # idle long enough
    assert decide(True, 400, 300, paused=True, paused_by_idle=False) is None  # the provider's own pause
    assert decide(False, 10, 300, paused=True, paused_by_idle=True) == "resume"  # rule turned off
    assert decide(True, None, 300, paused=False, paused_by_idle=False) is None  # cannot measure


@pytest.mark.skipif(system.sys.platform == "win32", reason="the XDG autostart file is for Linux desktops")
def test_autostart_writes_and_removes_an_xdg_desktop_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    command = system.launch_command(tmp_path / "my worker.json")
    system.set_autostart(True, command)
    text = (tmp_path / "autostart" / "pictor-worker.desktop").read_text()
    assert "Exec=" in text and "gui" in text and "'" + str(tmp_path / "my worker.json") + "'" in text
    assert system.autostart_enabled()
    system.set_autostart(False, command)
    assert not system.autostart_enabled()


def test_windows_autostart_uses_the_installed_launcher_when_there_is_one():
    app = r"C:\Users\Ann Lee\AppData\Local\Programs\PictorWorker"
    installed = {app + r"\Python\pythonw.exe", app + r"\pictor_worker_gui.pyw"}
    # The installed app, as the installer's own Run entry starts it (plus a non-default config).
    command = system.autostart_command(app + r"\Python\python.exe", "win32", installed.__contains__,
                                       config_path=r"D:\cfg\worker.json")
    assert command == [app + r"\Python\pythonw.exe", app + r"\pictor_worker_gui.pyw",
                       "--config", r"D:\cfg\worker.json"]
    assert system.subprocess.list2cmdline(command) == (
        f'"{app}\\Python\\pythonw.exe" "{app}\\pictor_worker_gui.pyw" --config D:\\cfg\\worker.json')
    # A developer's venv on Windows: no launcher beside it, so the module under pythonw.
    venv = r"C:\src\pictor\.venv\Scripts"
    command = system.autostart_command(venv + r"\python.exe", "win32", {venv + r"\pythonw.exe"}.__contains__)
    assert command == [venv + r"\pythonw.exe", "-m", "tray_client", "gui"]
    # Linux: the venv's pictor-worker script when there is one.
    assert system.autostart_command("/opt/venv/bin/python", "linux", {"/opt/venv/bin/pictor-worker"}.__contains__,
                                    data_dir="/srv/data") == ["/opt/venv/bin/pictor-worker", "gui",
                                                              "--data-dir", "/srv/data"]
    assert system.autostart_command("/usr/bin/python3", "linux", lambda _p: False) == [
        "/usr/bin/python3", "-m", "tray_client", "gui"]


def test_the_benchmark_status_comes_from_the_engine_state():
    vm = ViewModel("https://portal.example", 7)

    def event(**state):
        return vm.apply_event({"kind": "state", "state": EngineState(**{"state": "idle", "online": True,
                                                                        "task_id": None, "bench_score": 900,
                                                                        **state})})
    event(benchmark="idle")
    assert not vm.bench_running and vm.headline()[0] == "Waiting for work"
    vm.bench_requested = True  # the button: shown at once, before the engine's event arrives
    assert vm.bench_running and vm.bench_text()[1] == "Starting the benchmark…"
    event(benchmark="queued", task_id=5, state="busy")
    assert not vm.bench_requested and vm.bench_running
    assert vm.bench_text()[1].startswith("Queued")
    event(benchmark="running", message="Bench Score 900")  # whatever the message, the field decides
    assert vm.bench_running and vm.headline()[0] == "Running the benchmark"
    assert vm.bench_text()[1].startswith("Running the benchmark")
    event(benchmark="failed", benchmark_error="Blender crashed", message="looking for work")
    assert not vm.bench_running and vm.feedback["bench"] == ("error", "The benchmark failed: Blender crashed")
    assert vm.bench_text()[1] == "The benchmark failed: Blender crashed"
    assert vm.headline()[0] == "Waiting for work"
    # One the engine starts by itself (first run) shows too, and its result is announced.
    event(benchmark="queued")
    assert vm.bench_running
    event(benchmark="running")
    event(benchmark="done", bench_score_reported=1234)
    said = "This machine measured 1234; your Bench Score, from the portal's own timed run, is 900."
    assert not vm.bench_running and vm.feedback["bench"] == ("ok", said)
    assert vm.bench_text() == ("900", said)  # the portal's score is the one shown as yours
    event(benchmark="done", bench_score_reported=1234)  # later events change nothing
    assert vm.feedback["bench"] == ("ok", said)


def test_idle_detection_says_why_it_is_unavailable(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(system.sys, "platform", "linux")
    probe, reason = system.idle_probe()
    assert probe is None and "DISPLAY" in reason
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(system.shutil, "which", lambda _name: None)
    probe, reason = system.idle_probe()
    assert probe is None and "xprintidle" in reason


def test_states_say_what_is_happening_and_what_to_do():
    vm = ViewModel("https://portal.example", 7)
    assert vm.headline()[0] == "Connecting…"
    vm.apply_event({"kind": "state", "state": EngineState(state="offline", message="portal unreachable: timed out",
                                                          outbox_pending=2, server_url="https://portal.example")})
    title, hint = vm.headline()
    assert title == "Offline" and "internet connection" in hint and "2 finished update(s)" in hint
    vm.apply_event({"kind": "state", "state": EngineState(state="paused", paused=True, online=True)})
    assert "Resume" in vm.headline()[1]
    vm.paused_by_idle = True
    assert "without keyboard or mouse input" in vm.headline()[1]
    vm.apply_event({"kind": "state", "state": EngineState(state="error",
                                                          error="Blender not found: install Blender")})
    assert vm.headline() == ("Needs attention", "Blender not found: install Blender")
    # A refused token leaves the engine offline with an error: that is something to fix, not wait out.
    vm.apply_event({"kind": "state", "state": EngineState(state="offline", online=False,
                                                          error="the portal refused this worker's token: pair again")})
    assert vm.state == "error" and "pair again" in vm.headline()[1]
    assert vm.mining_availability() == (False, "Checking this computer's GPUs…")
    vm.apply_hardware({"gpus": [], "gpu_note": "no NVIDIA GPU found (nvidia-smi missing)"})
    available, reason = vm.mining_availability()
    assert not available and "NVIDIA" in reason and "nvidia-smi missing" in reason


# --- a real engine against the real portal -----------------------------------------------------------

def test_engine_events_feed_the_view_model_and_actions_reach_the_portal(portal, scene, tmp_path):
    worker, config_path, data_dir = pair_worker(portal, tmp_path, "ui-viewmodel")
    cfg = config_mod.load(config_path, data_dir)
    engine = Engine(cfg, progress_interval=0.5, idle_backoff=(0.2, 1.0))
    idle = {"seconds": 5.0}  # seconds since the last keyboard or mouse input, as the OS would say
    controller = Controller(engine, cfg, idle_probe=(lambda: idle["seconds"], ""))
    controller.IDLE_CHECK_S = 0.2
    vm = controller.vm
    job = portal.submit_render(scene, (1, 1), samples=400)
    engine.start()
    try:
        # A new worker's first task is the Bench Score run the portal issues at hello and times itself.
        pump_until(controller, lambda v: v.busy, what="the Bench Score run to start")
        assert vm.snapshot.job_type == "benchmark"
        assert dict(vm.computing_rows())["Job Type"].startswith("Bench Score run")
        pump_until(controller, lambda v: v.snapshot.tasks_completed == 1, timeout=120,
                   what="the Bench Score run to complete")

        # Then the creator's task: every Computing field comes from the engine's events.
        pump_until(controller, lambda v: v.busy, what="the task to start")
        assert vm.state == "busy" and vm.snapshot.job_id == job["id"] and vm.snapshot.job_type == "render"
        rows = dict(vm.computing_rows())
        assert rows["Job ID"] == str(job["id"]) and rows["Task ID"] == str(vm.snapshot.task_id)
        assert rows["Job Type"].startswith("3D rendering")
        task_id = vm.snapshot.task_id
        progress_seen = []
        notes = pump_until(controller,
                           lambda v: progress_seen.append(v.progress) or v.snapshot.tasks_completed == 2,
                           what="the task to complete")
        assert max(progress_seen) > 0
        assert not vm.busy and vm.state == "idle"
        done = [n for n in notes if n.title == "Task completed"]
        assert len(done) == 1 and f"Task {task_id}" in done[0].message
        tasks = portal.worker_tasks(worker["id"])["items"]
        reward = next(t["reward"] for t in tasks if t["id"] == task_id)
        assert usd(reward) in done[0].message and vm.snapshot.last_reward == reward
        assert vm.hardware.get("renderers", {}).get("blender")  # Settings → Renderers is real data

        # Settings come from the portal: average bid, Bench Score, the estimate and how it was made.
        pump_until(controller, lambda v: "estimated_earning_per_hour" in v.settings, what="settings")
        amount, explanation = vm.earning_text()
        assert amount.endswith("/ hour") and "utilisation" in explanation
        assert vm.average_bid is not None

        # Pause and resume reach the engine, and the next heartbeat tells the portal.
        controller.toggle_pause()
        pump_until(controller, lambda v: v.state == "paused", what="paused")
        engine.heartbeat()
        assert portal.api("GET", f"/workers/{worker['id']}")["status"] == "paused"
        controller.toggle_pause()
        pump_until(controller, lambda v: v.state == "idle", what="resumed")
        engine.heartbeat()
        assert portal.api("GET", f"/workers/{worker['id']}")["status"] == "online"

        # "Work only when idle": input seen -> paused by the rule; idle long enough -> resumed.
        assert controller.set_idle_only(True, "2") is None
        assert json.loads(config_path.read_text())["ui"] == {"idle_only": True, "idle_minutes": 2}
        assert Controller(engine, config_mod.load(config_path, data_dir),
                          idle_probe=(lambda: 0.0, "")).vm.prefs == {"idle_only": True, "idle_minutes": 2}
        pump_until(controller, lambda v: v.state == "paused", what="paused while in use")
        assert vm.paused_by_idle and "2 min without keyboard or mouse input" in vm.headline()[1]
        idle["seconds"] = 121.0
        pump_until(controller, lambda v: v.state == "idle", what="resumed when idle")
        assert controller.set_idle_only(False, "2") is None and not vm.paused_by_idle

        # A custom bid: validated here, saved through the engine, visible to the provider API.
        assert controller.set_bid("abc") and vm.feedback["bid"][0] == "error"
        assert controller.set_bid("0.37") is None
        controller.wait_idle()
        assert vm.feedback["bid"][0] == "ok", vm.feedback
        assert portal.api("GET", f"/workers/{worker['id']}")["bid"] == "0.370000"
        assert vm.custom_bid == "0.370000" and "per bench-hour" in vm.bid_preview()[1]
        controller.set_bid(None)
        controller.wait_idle()
        assert portal.api("GET", f"/workers/{worker['id']}")["bid"] is None

        # Wallet and mining config are synced with PUT /worker/settings.
        controller.save_wallet("0xFeedBeef")
        controller.wait_idle()
        assert worker_settings(portal, cfg.token)["wallet_address"] == "0xFeedBeef"
        assert dict(vm.computing_rows())["Wallet Address"] == "0xFeedBeef"
        mining = ("stratum+tcp://pool.example.com:4444", "etc", "0xFeedBeef", "--intensity 20", True)
        assert "NVIDIA" in controller.save_mining(*mining)  # this machine: no NVIDIA GPU, so refused
        assert worker_settings(portal, cfg.token)["mining_config"]["enabled"] is False
        # The same action on a machine whose probe found an NVIDIA GPU (the report is stood in here).
        vm.apply_hardware({**vm.hardware, "gpus": [{"name": "NVIDIA GeForce RTX 4070"}]})
        assert controller.save_mining(*mining) is None
        controller.wait_idle()
        assert vm.feedback["mining"][0] == "ok", vm.feedback
        assert worker_settings(portal, cfg.token)["mining_config"] == {
            "pool": "stratum+tcp://pool.example.com:4444", "coin": "ETC", "wallet": "0xFeedBeef",
            "extra": "--intensity 20", "enabled": True}
        assert controller.save_mining("", "ETC", "", "", True) and vm.feedback["mining"][0] == "error"

        # Run benchmark: the engine renders the benchmark scene between tasks and the portal gets the score.
        controller.run_benchmark()
        assert vm.bench_running and vm.bench_text()[1]
        pump_until(controller, lambda v: not v.bench_running, timeout=180, what="the benchmark")
        assert vm.feedback["bench"][0] == "ok", vm.feedback
        score = vm.snapshot.bench_score_reported
        assert isinstance(score, int) and score > 0 and vm.feedback["bench"][1].startswith(f"This machine measured {score}")
        shown = portal.api("GET", f"/workers/{worker['id']}")
        assert shown["bench_score_reported"] == score  # shown, not priced
        # "Your Bench Score" is the portal's (from its timed run), as GET /worker/settings says.
        assert vm.bench_text()[0] == str(shown["bench_score"] or "Not measured yet")

        # Quit: the engine stops and says goodbye.
        stopped = []
        controller.stop(lambda: stopped.append(True))
        pump_until(controller, lambda v: stopped, what="the engine to stop")
        assert vm.stopping and engine.snapshot().message == "stopped"
    finally:
        engine.stop(hand_back=True)
        engine.join(30)


def test_choosing_blender_in_settings_clears_the_error_on_the_portal(portal, blender, realesrgan, tmp_path):
    worker, config_path, data_dir = pair_worker(portal, tmp_path, "ui-blender-path")
    cfg = config_mod.load(config_path, data_dir)
    nowhere = str(tmp_path / "nowhere" / "blender")
    cfg.settings["blender_path"] = nowhere
    engine = Engine(cfg, idle_backoff=(0.2, 1.0))
    engine.pause()  # only the renderer state matters here: no task from another test's job
    controller = Controller(engine, cfg, idle_probe=(None, "not measured in this test"))
    vm = controller.vm
    engine.start()
    try:
        pump_until(controller, lambda v: v.snapshot.online and v.state == "error", what="Blender not found")
        assert "Blender not found" in vm.headline()[1]
        assert portal.api("GET", f"/workers/{worker['id']}")["status"] == "error"

        controller.set_blender_path(str(tmp_path / "still-nowhere"))
        controller.wait_idle()
        assert vm.feedback["renderer"][0] == "error" and cfg.settings["blender_path"] == nowhere

        # The real Blender: saved, probed again and told to the portal, with no restart.
        controller.set_blender_path(str(blender))
        pump_until(controller, lambda v: v.state == "paused", what="the error to clear")
        assert vm.feedback["renderer"][0] == "ok", vm.feedback
        portal.wait_for(lambda: portal.api("GET", f"/workers/{worker['id']}")["status"] == "paused",
                        what="the portal to see Blender")
        assert json.loads(config_path.read_text())["settings"]["blender_path"] == str(blender)
        pump_until(controller, lambda v: str(blender) in v.renderer_rows()[0][1], what="the renderer row")
        assert "render" in engine.snapshot().job_types
    finally:
        engine.stop(hand_back=True)
        engine.join(30)


def test_the_header_names_the_worker_as_the_portal_does():
    from tray_client.ui.viewmodel import ViewModel
    vm = ViewModel("https://portal.example", 2)
    assert vm.worker_label == "#2"  # before the portal's settings arrive: its number, not "WORKER 2"
    vm.apply_settings({"name": "Attic tower", "bid": "0.50"})
    assert vm.worker_label == "Attic tower"
    vm.apply_settings({"name": "Renamed box\x1b[31m"})  # renamed on the portal; its text is untrusted
    assert vm.worker_label.startswith("Renamed box") and "\x1b" not in vm.worker_label
