"""The tray icon: its menu (with pystray's dummy backend), state icons, and the import guard that keeps
the window usable where pystray cannot load."""

import importlib
import os
import subprocess
import sys

import pytest

from tray_client.ui.icons import STATE_COLOURS, state_icon


@pytest.fixture
def tray_module(monkeypatch):
    """tray_client.ui.tray imported afresh with PYSTRAY_BACKEND=dummy (pystray picks its backend on import)."""
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    def ours(name):
        return name == "pystray" or name.startswith("pystray.") or name == "tray_client.ui.tray"
    saved = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in saved:
        del sys.modules[name]
    module = importlib.import_module("tray_client.ui.tray")
    yield module
    for name in [n for n in sys.modules if ours(n)]:
        del sys.modules[name]
    sys.modules.update(saved)


class Desk:
    """Stands in for the app: records what the menu asked for, keeps a paused flag like the engine."""

    def __init__(self):
        self.paused = False
        self.calls = []

    def toggle(self):
        self.paused = not self.paused
        self.calls.append("toggle")


def make_tray(module, desk):
    return module.Tray(is_paused=lambda: desk.paused,
                       status_text=lambda: f"Pictor Worker · paused={desk.paused}",
                       on_open=lambda: desk.calls.append("open"),
                       on_dashboard=lambda: desk.calls.append("dashboard"),
                       on_toggle_pause=desk.toggle, on_quit=lambda: desk.calls.append("quit"))


def test_menu_items_checked_state_and_actions(tray_module):
    assert tray_module.pystray is not None and tray_module.backend_name() == "dummy"
    desk = Desk()
    tray = make_tray(tray_module, desk)
    icon = tray.create("busy", "Pictor Worker · Computing")
    items = [item for item in icon.menu.items if item is not tray_module.pystray.Menu.SEPARATOR]
    assert [item.text for item in items] == ["Pictor Worker · paused=False", "Open", "Open Dashboard", "Pause",
                                             "Quit"]
    status, open_item, dashboard, pause, quit_item = items
    assert not status.enabled  # an information line, not an action
    assert open_item.default  # a click on the icon opens the window
    assert pause.checked is False

    pause(icon)
    assert desk.paused and pause.checked is True
    assert status.text == "Pictor Worker · paused=True"  # the status line is recomputed too
    pause(icon)
    assert not desk.paused and pause.checked is False
    open_item(icon)
    dashboard(icon)
    quit_item(icon)
    assert desk.calls == ["toggle", "toggle", "open", "dashboard", "quit"]
    icon.menu(icon)  # activating the icon runs the default item (pystray: Icon() -> menu(icon)): Open
    assert desk.calls[-1] == "open"


def test_state_changes_redraw_the_icon_and_the_dummy_shows_nothing(tray_module):
    desk = Desk()
    tray = make_tray(tray_module, desk)
    assert tray.start("idle") is False and "dummy" in tray.unavailable_reason  # so closing quits
    icon = tray.create("idle")
    tray.update("error", "Pictor Worker · Needs attention")
    assert tray.state == "error" and icon.icon is state_icon("error") and icon.title.endswith("Needs attention")
    assert tray.notify("Task completed", "Task 3 done: you earned $0.01") is False  # not running
    tray.stop()  # harmless when not running


def test_each_state_has_its_own_colour_and_glyph():
    images = {state: state_icon(state, 32) for state in STATE_COLOURS}
    assert len({img.tobytes() for img in images.values()}) == len(STATE_COLOURS)
    for state, image in images.items():
        assert image.size == (32, 32) and image.mode == "RGBA"
        want = tuple(int(STATE_COLOURS[state][i:i + 2], 16) for i in (1, 3, 5))
        rgb = image.convert("RGB")
        assert any(rgb.getpixel((x, y)) == want for x in range(32) for y in range(32)), state
    # A grey-scale copy still tells the states apart: the shapes differ, not only the colours.
    greys = {img.convert("L").point(lambda v: 255 if v > 128 else 0).tobytes() for img in images.values()}
    assert len(greys) == len(STATE_COLOURS)
    assert state_icon("no-such-state").tobytes() == state_icon("offline").tobytes()


def test_without_a_display_the_tray_is_absent_not_an_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND")}
    code = ("import tray_client.ui.tray as t, tray_client.ui.window, tray_client.ui.app; "
            "print('pystray', t.pystray is not None, t.backend_name(), t.PYSTRAY_ERROR is not None)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    if sys.platform.startswith("linux"):
        # pystray's Xlib backend raises a non-ImportError here: the UI modules still import.
        assert done.stdout.strip() == "pystray False None True"
