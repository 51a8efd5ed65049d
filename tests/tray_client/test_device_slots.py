"""Device slots in the Worker App: which devices are shared, one task per slot at once, each pinned to its
device. The GPUs come from FakeDeviceProbe (the hardware boundary: this machine has none); the portal,
the CLI and Blender are real in the end-to-end test."""

import json
import subprocess
import threading
import time

import psutil
import pytest

from tray_client import config, devices
from tray_client.devices import Device
from tray_client.engine import Engine
from tests.tray_client.conftest import make_scene
from tests.tray_client.portal_fixture import WORKER, FakeClient, Portal, pair_worker, wait_for
from tests.tray_client.test_engine import FakeRunner, factory, probe, task


class FakeDeviceProbe:
    """Stands in for devices.probe: reports GPUs that are not in this machine (and its CPU)."""

    def __init__(self, gpus: int = 2):
        self.found = [Device(f"gpu{i}", "CUDA", f"Fake RTX {i}", 24576, i) for i in range(gpus)] + \
                     [devices.cpu_device("Test CPU")]

    def __call__(self):
        return list(self.found)


class SlotClient(FakeClient):
    """FakeClient whose claims name a slot, as PortalClient.claim(slot=) does."""

    canceled: set = set()

    def claim(self, slot=None):
        self._call("claim", slot)
        if self.tasks:
            return self.tasks.pop(0), None
        return None, self.retry_after

    def progress(self, task_id, fraction, eta_s, message):
        self._call("progress", task_id, fraction)
        return task_id not in self.canceled


def test_the_devices_shared_by_default_and_by_choice():
    two = FakeDeviceProbe(2)()
    assert [d.id for d in devices.active(two, None)] == ["gpu0", "gpu1"]  # the CPU stays off beside GPUs
    assert [d.id for d in devices.active(FakeDeviceProbe(0)(), None)] == ["cpu"]
    assert [d.id for d in devices.active(two, ["cpu", "gpu1"])] == ["gpu1", "cpu"]
    assert [d.id for d in devices.active(two, ["gpu7"])] == ["gpu0", "gpu1"]  # a GPU that left: the default
    assert devices.parse_selection(" GPU0, cpu,gpu0 ") == ["gpu0", "cpu"]
    for bad in ("", "gpu16", "gpu0,tpu", "../x"):
        with pytest.raises(ValueError):
            devices.parse_selection(bad)
    # The hardware report's GPUs (GPUtil's nvidia-smi order) become gpu0, gpu1, ...; the CPU comes last.
    found = devices.from_report({"gpus": [{"name": "A", "memory_mb": 8192, "index": 0}, {"name": "B", "index": 1}],
                                 "cpu": {"brand": "Ryzen"}})
    assert [(d.id, d.kind, d.index) for d in found] == [("gpu0", "CUDA", 0), ("gpu1", "CUDA", 1), ("cpu", "CPU", None)]


def test_run_devices_is_checked_and_saved_in_the_config(tmp_path):
    cfg_path, data = tmp_path / "worker.json", tmp_path / "data"
    cfg_path.write_text(json.dumps({"server_url": "http://127.0.0.1:9", "worker_id": 1, "token": "pwk_x",
                                    "settings": {"auto_benchmark": False, "auto_speedtest": False}}))
    cfg_path.chmod(0o600)
    common = ["--config", str(cfg_path), "--data-dir", str(data)]
    bad = subprocess.run([WORKER, "run", "--headless", "--once", "--devices", "gpu0,tpu0", *common],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "tpu0" in bad.stderr
    done = subprocess.run([WORKER, "run", "--headless", "--once", "--devices", "gpu1,cpu", *common],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr  # the portal is not there; the choice is kept all the same
    assert json.loads(cfg_path.read_text())["settings"]["devices"] == ["gpu1", "cpu"]
    assert config.load(cfg_path, data).settings["devices"] == ["gpu1", "cpu"]


def slot_engine(tmp_path, client, selection=None, gpus=2):
    cfg = config.WorkerConfig(path=tmp_path / "worker.json", data_dir=tmp_path / "data",
                              server_url="http://127.0.0.1:9", worker_id=1, token="pwk_test")
    cfg.settings.update(auto_benchmark=False, auto_speedtest=False, devices=selection)
    return Engine(cfg, client=client, probe=probe, device_probe=FakeDeviceProbe(gpus), runner_factory=factory,
                  progress_interval=0.05, idle_backoff=(0.05, 0.2))


def test_two_slots_run_two_tasks_at_once_each_on_its_device(tmp_path):
    client = SlotClient([task(1, "slow"), task(2, "slow")], files={"scene.blend": b"BLENDER-v304 fake scene"})
    FakeRunner.runs = []
    engine = slot_engine(tmp_path, client)
    hooks = []
    engine.device_hooks.append(lambda phase, device, task_id: hooks.append((phase, device.id, task_id)))
    thread = engine.start()
    try:
        both = wait_for(lambda: (s := engine.snapshot()).slots and all(x.task_id for x in s.slots) and s, timeout=20,
                        what="both slots busy")
        assert [(x.id, x.state) for x in both.slots] == [("gpu0", "busy"), ("gpu1", "busy")]
        assert {x.task_id for x in both.slots} == {1, 2} and both.state == "busy"
        hello = next(c[1] for c in client.calls if c[0] == "hello")
        assert [s["id"] for s in hello["slots"]] == ["gpu0", "gpu1"] and hello["capabilities"]["gpu"] is True
        assert {c[1] for c in client.calls if c[0] == "claim"} == {"gpu0", "gpu1"}  # each claim names its slot
        assert sorted(hooks) == sorted([("started", "gpu0", both.slots[0].task_id),
                                        ("started", "gpu1", both.slots[1].task_id)])
        # The portal cancels task 1: only its slot stops; the other keeps rendering task 2.
        client.canceled = {1}
        after = wait_for(lambda: (s := engine.snapshot()) and any(x.task_id is None for x in s.slots) and s,
                         timeout=20, what="the cancel")
        assert sorted((x.task_id for x in after.slots), key=str) == [2, None]
        assert after.task_id == 2 and after.state == "busy"  # the headline shows the busy slot
        assert ("ended", next(x.id for x in both.slots if x.task_id == 1), 1) in hooks
    finally:
        engine.stop(hand_back=True)
        thread.join(30)
    assert {(p, d) for p, d, _ in hooks} == {("started", "gpu0"), ("ended", "gpu0"), ("started", "gpu1"),
                                             ("ended", "gpu1")}
    # Stopping gave the still-running task 2 back; the canceled task 1 was never reported at all.
    assert [c[1] for c in client.calls if c[0] == "hand_back"] == [2]
    assert not [c for c in client.calls if c[0] in ("fail", "complete")]
    assert all(x.task_id is None for x in engine.snapshot().slots)


def test_each_slot_pins_its_runner_to_its_device(tmp_path):
    engine = slot_engine(tmp_path, SlotClient(), selection=["gpu1", "cpu"])
    engine.gpu_backend = "CUDA"
    slots = {s.id: s for s in engine._setup_slots()}
    assert list(slots) == ["gpu1", "cpu"]
    gpu, cpu = engine._runner_settings(slots["gpu1"]), engine._runner_settings(slots["cpu"])
    assert gpu.device_env() == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1",
                                "HIP_VISIBLE_DEVICES": "1"} and gpu.gpu_backend == "CUDA"
    assert cpu.device_env()["CUDA_VISIBLE_DEVICES"] == "" and cpu.gpu_backend is None  # Cycles renders on the CPU
    # One GPU, shared alone: the whole machine as before slots (nothing pinned, no slot named in claims).
    single = slot_engine(tmp_path / "one", SlotClient(), gpus=1)
    single.gpu_backend = "CUDA"
    (only,) = single._setup_slots()
    assert only.claim_slot is None and single._runner_settings(only).device_env() == {}


# --- end to end: a real portal, two "GPUs", two real Blender renders at once --------------------

def blender_envs(folder) -> dict[int, str | None]:
    """pid -> CUDA_VISIBLE_DEVICES of each live Blender working under folder."""
    found = {}
    for proc in psutil.process_iter(["name", "cwd", "status"]):
        if "blender" in (proc.info["name"] or "") and str(proc.info["cwd"] or "").startswith(str(folder)) \
                and proc.info["status"] != psutil.STATUS_ZOMBIE:
            try:
                found[proc.pid] = proc.environ().get("CUDA_VISIBLE_DEVICES")
            except psutil.Error:
                pass
    return found


@pytest.mark.slow
def test_a_node_reporting_two_gpus_runs_two_tasks_at_once_end_to_end(blender, tmp_path):
    portal = Portal(tmp_path / "portal").start()
    try:
        worker, config_path, data_dir = pair_worker(portal, tmp_path, "two-gpu-node")
        cube = make_scene(blender, tmp_path / "cube.blend")
        job = portal.submit_render(cube, (1, 2), samples=384, name="two at once")
        engine = Engine(config.load(config_path, data_dir), device_probe=FakeDeviceProbe(2), idle_backoff=(0.2, 1.0))
        seen: dict[int, str | None] = {}
        at_once = []

        def watch():
            while not done.is_set():
                envs = blender_envs(data_dir)
                seen.update(envs)
                if len(envs) >= 2:
                    at_once.append(sorted(str(v) for v in envs.values()))
                time.sleep(0.2)
        done = threading.Event()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        thread = threading.Thread(target=engine.run, daemon=True)
        thread.start()
        try:
            portal.wait_for(lambda: portal.job(job["id"])["status"] in ("completed", "failed"), timeout=240,
                            what="the job to finish")
        finally:
            done.set()
            engine.stop()
            thread.join(60)
        assert portal.job(job["id"])["status"] == "completed"
        # Two Blenders ran at once, one pinned to each GPU; none ever saw both or none.
        assert at_once and ["0", "1"] in at_once, (at_once, seen)
        assert set(seen.values()) == {"0", "1"}, seen
        listed = portal.worker_tasks(worker["id"])["items"]
        renders = [t for t in listed if t["job_type"] == "render"]
        assert len(renders) == 2 and all(t["status"] == "completed" for t in renders)
        assert {t["slot"] for t in listed} == {"gpu0", "gpu1"}
        slots = {s["id"]: s for s in portal.api("GET", f"/workers/{worker['id']}")["slots"]}
        assert list(slots) == ["gpu0", "gpu1"] and all(s["state"] == "idle" for s in slots.values())
        # The portal's Bench Score run (issued at hello) wants a real GPU: on these fake ones it fails.
        completed = [t for t in listed if t["status"] == "completed"]
        assert sum(s["tasks_completed"] for s in slots.values()) == len(completed) == engine.snapshot().tasks_completed
    finally:
        portal.close()


# --- the desktop window: every slot on the Computing tab, the choice in Settings -----------------

def test_the_window_shows_every_slot_and_saves_the_devices_chosen(tmp_path, monkeypatch, tk_display):
    import tkinter as tk
    from tests.tray_client.ui_helpers import ARTIFACTS
    from tray_client.ui.viewmodel import Controller
    from tray_client.ui.window import MainWindow, apply_style

    display = tk_display  # the session's X server (conftest.tk_display): never closed under a live Tk
    monkeypatch.setenv("DISPLAY", display.name)
    client = SlotClient([task(1, "slow"), task(2, "slow")], files={"scene.blend": b"BLENDER-v304 fake scene"})
    client.settings = lambda: {"bid": "0.500000", "average_bid": "0.450000", "bench_score": 1000}
    engine = slot_engine(tmp_path, client)
    controller = Controller(engine, engine.cfg, client=client, idle_probe=(None, "not measured in this test"))
    root = tk.Tk()
    try:
        apply_style(root)
        root.geometry("860x860+0+0")
        window = MainWindow(root, controller, on_close=root.withdraw, on_quit=root.quit)
        engine.start()

        def pump():
            controller.drain()
            window.render()
            root.update()
            return all(cells[1].cget("text") == "Computing" for cells in window._slot_cells) \
                and len(window._slot_cells) == 2
        wait_for(pump, timeout=60, interval=0.05, what="both slots on the Computing tab")  # a loaded CI box
        rows = [[cell.cget("text") for cell in cells] for cells in window._slot_cells]
        assert [row[0] for row in rows] == ["gpu0 · Fake RTX 0", "gpu1 · Fake RTX 1"]
        assert sorted(row[2].split(" · ")[0] for row in rows) == ["Task 1", "Task 2"]
        assert all(row[3].startswith("10% · ETA") for row in rows), rows  # each slot's own progress
        time.sleep(0.3)
        root.update()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        display.screenshot((0, 0, 860, 860)).save(ARTIFACTS / "app-computing-two-slots.png")
        # Settings: each device found, the GPUs ticked and the CPU not; ticking it is saved for the next start.
        window.notebook.select(window.settings_tab)
        for _ in range(5):
            controller.drain()
            window.render(force=True)
            root.update()
        assert {slot: var.get() for slot, var in window.device_vars.items()} == {
            "gpu0": True, "gpu1": True, "cpu": False}
        window.device_vars["cpu"].set(True)
        window._apply_devices()
        assert json.loads(engine.cfg.path.read_text())["settings"]["devices"] == ["gpu0", "gpu1", "cpu"]
        window.settings_tab.canvas.yview_moveto(1.0)
        window.render(force=True)
        root.update()
        time.sleep(0.3)
        root.update()
        display.screenshot((0, 0, 860, 860)).save(ARTIFACTS / "app-settings-devices.png")
        assert "at least one" in controller.set_devices([])
    finally:
        engine.stop(hand_back=True)
        engine.join(30)
        root.destroy()
