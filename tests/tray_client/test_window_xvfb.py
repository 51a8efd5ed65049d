"""The real desktop app (`pictor-worker gui`, a subprocess) on a virtual X display: pair through the
first-run dialog, watch a real Blender render progress, switch tabs, type a bid with xdotool and see it
reach the portal, hide to the tray, quit cleanly with the running task handed back; then start again
without a tray, where closing the window quits.

The render is real (Cycles on the CPU, the 64x64 test scene at 3000 samples: a few seconds per tile);
nothing in the app is faked. The system tray is: Xvfb has none, so the test owns the tray selection.
Screenshots land in test-artifacts/screenshots/app-*.png."""

import json
import signal
import subprocess
import time

import pytest

from tray_client.ui.icons import colour
from tray_client.ui.window import ERROR, PROGRESS

from .portal_fixture import WORKER, wait_for
from .ui_helpers import (ARTIFACTS, Display, FakeSystemTray, count_colour, differs, hex_rgb, shared_portal)

MAIN_TITLE = "^Pictor Worker$"


@pytest.fixture(scope="module")
def display():
    screen = Display()
    yield screen
    screen.close()


@pytest.fixture(scope="module")
def portal(request, tmp_path_factory):
    return shared_portal(request, tmp_path_factory)


def test_the_desktop_app_pairs_renders_and_syncs_settings(display, portal, scene, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    worker = portal.create_worker("desktop-node")
    config = tmp_path / "worker.json"
    # Not paired yet; only the settings that keep a test short (no first-run benchmark or speed test).
    config.write_text(json.dumps({"settings": {"auto_benchmark": False, "auto_speedtest": False}}))
    job = portal.submit_render(scene, (1, 4), samples=3000, name="desktop render")
    tray = FakeSystemTray(display.name)
    env = {**display.env, "PICTOR_SERVER_URL": portal.url, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("PYSTRAY_BACKEND", None)
    log = open(tmp_path / "gui.log", "wb")
    argv = [WORKER, "gui", "--config", str(config), "--data-dir", str(tmp_path / "data")]
    app = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    shots = {}

    def shoot(window, name):
        image = display.screenshot(display.geometry(window))
        image.save(ARTIFACTS / f"app-{name}.png")
        shots[name] = image
        return image

    try:
        # --- first run: the pairing dialog, with the server URL prefilled --------------------------
        dialog = display.find_window("Pair this computer")
        display.xdotool("mousemove", "100", "100")
        time.sleep(0.5)
        shoot(dialog, "pairing")
        display.xdotool("type", "--delay", "20", "WRNG-CODE")
        display.xdotool("key", "Return")
        wait_for(lambda: count_colour(display.screenshot(display.geometry(dialog)), hex_rgb(ERROR)) > 50,
                 what="the wrong-code error")
        time.sleep(0.3)
        shoot(dialog, "pairing-error")
        assert not json.loads(config.read_text()).get("token")
        # The code entry is selected after an error: typing replaces it.
        display.xdotool("type", "--delay", "20", worker["pairing_code"])
        display.xdotool("key", "Return")
        wait_for(lambda: json.loads(config.read_text()).get("token"), what="the credentials to be saved")
        assert json.loads(config.read_text())["worker_id"] == worker["id"]

        # --- Computing: a real render, the progress bar moves ----------------------------------------
        window = display.find_window(MAIN_TITLE)
        fill = hex_rgb(PROGRESS)
        first = wait_for(lambda: (lambda img: img if count_colour(img, fill) > 0 else None)(
            display.screenshot(display.geometry(window))), timeout=90, what="the progress bar to start")
        first_fill = count_colour(first, fill)
        later = wait_for(lambda: (lambda img: img if count_colour(img, fill) > first_fill else None)(
            display.screenshot(display.geometry(window))), timeout=60, what="the progress bar to advance")
        first.save(ARTIFACTS / "app-computing.png")
        later.save(ARTIFACTS / "app-computing-later.png")
        assert count_colour(later, fill) > first_fill > 0

        # --- the other tabs (Alt+M, Alt+S: the tabs' mnemonics) -------------------------------------
        display.xdotool("key", "alt+m")
        time.sleep(0.6)
        mining = shoot(window, "mining")
        display.xdotool("key", "alt+s")
        time.sleep(0.6)
        settings = shoot(window, "settings")
        display.xdotool("key", "alt+c")
        time.sleep(0.6)
        computing = shoot(window, "computing-again")
        assert count_colour(mining, fill) == 0 and count_colour(settings, fill) == 0  # the bar is on Computing
        assert differs(mining, settings) and differs(mining, computing) and differs(settings, computing)

        # --- Settings: type a custom bid; it reaches the portal ----------------------------------------
        display.xdotool("key", "alt+b")  # focuses the Custom Bid entry, its text selected
        time.sleep(0.3)
        display.xdotool("type", "--delay", "30", "0.37")
        display.xdotool("key", "Return")
        wait_for(lambda: portal.api("GET", f"/workers/{worker['id']}")["bid"] == "0.370000", timeout=30,
                 what="the bid to reach the portal")
        time.sleep(0.5)
        shoot(window, "settings-bid")

        # --- close hides to the tray; the worker keeps working ----------------------------------------
        display.xdotool("key", "Escape")
        wait_for(lambda: not display.xdotool("search", "--onlyvisible", "--name", MAIN_TITLE, check=False),
                 timeout=10, what="the window to hide")
        assert app.poll() is None

        # --- quit (a logout's SIGTERM, as the tray's Quit): the running task is handed back -------------
        running = [t["id"] for t in portal.job(job["id"])["tasks"] if t["status"] == "running"]
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=60) == 0
        after = {t["id"]: t["status"] for t in portal.job(job["id"])["tasks"]}
        assert "running" not in after.values(), after
        assert all(after[task] in ("queued", "completed") for task in running), after

        # --- without a tray, closing the window quits: started again, paired, it picks up a task ----------
        tray.close()
        app = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        window = display.find_window(MAIN_TITLE)
        busy_header = hex_rgb(colour("busy"))
        wait_for(lambda: count_colour(display.screenshot(display.geometry(window)), busy_header) > 2000,
                 timeout=60, what="a task to start after the restart")
        shoot(window, "restarted")
        display.xdotool("key", "Escape")
        assert app.wait(timeout=60) == 0
        after = {t["id"]: t["status"] for t in portal.job(job["id"])["tasks"]}
        assert "running" not in after.values(), after
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        log.close()
        tray.close()
        portal.api("POST", f"/jobs/{job['id']}/cancel", expect=(200, 201, 202, 409))
    output = (tmp_path / "gui.log").read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]
