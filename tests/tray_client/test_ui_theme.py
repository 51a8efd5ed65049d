"""The window's theme and layout under a real Tk on Xvfb: Sun Valley under the app's own styles, sizes
that follow `tk scaling`, text that rewraps as the window is resized, and a first-run form that shows
a portal address it already knows instead of asking for it."""

import time
import tkinter as tk
from tkinter import ttk

import pytest

from tray_client import config as config_mod
from tray_client.ui import theme
from tray_client.ui.pairing import PairingView
from tray_client.ui.window import MUTED


@pytest.fixture
def display(tk_display):
    return tk_display  # the session's (conftest.tk_display): Tk outlives any server closed before the end


@pytest.fixture
def root(display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display.name)
    root = tk.Tk()
    yield root
    root.destroy()


def settle(root, seconds=0.3):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        root.update()
        time.sleep(0.02)


def test_sun_valley_under_the_apps_styles_with_point_sized_fonts(root, display):
    from PIL import ImageGrab
    style = theme.apply_theme(root)
    assert style.theme_use() == "sun-valley-light"
    assert style.lookup("Muted.TLabel", "foreground") == MUTED  # the app's styles survive the theme
    body = tk.font.nametofont("SunValleyBodyFont")
    assert int(body.cget("size")) > 0  # points: grows with tk scaling (sv-ttk's own are pixels)
    # A label made right after the theme is drawn on the app's white, not the theme's grey (#fafafa).
    label = ttk.Label(root, text=" ", style="Muted.TLabel", padding=30)
    label.pack()
    settle(root)
    x, y = label.winfo_rootx() + 10, label.winfo_rooty() + 10
    assert ImageGrab.grab(bbox=(x, y, x + 1, y + 1), xdisplay=display.name).convert("RGB").getpixel((0, 0)) == (255, 255, 255)


def test_sizes_follow_the_screens_scaling_and_stay_on_screen(root):
    root.tk.call("tk", "scaling", theme.BASE_SCALING)
    assert theme.scale(root) == 1.0 and theme.scaled_geometry(root, "800x720") == "800x720"
    root.tk.call("tk", "scaling", theme.BASE_SCALING * 1.5)
    assert theme.px(root, 76) == 114 and theme.scaled_geometry(root, "800x720") == "1200x920"  # 92% of 1000
    theme.set_min_size(root, 700, 560)
    assert root.minsize() == (1050, 840)


def test_wrapped_text_follows_the_window_width(root):
    theme.apply_theme(root)
    root.geometry("600x300")
    frame = ttk.Frame(root, padding=20)
    frame.pack(fill="both", expand=True)
    label = ttk.Label(frame, text="word " * 200, wraplength=300)
    label.pack(anchor="w")
    settle(root)
    narrow = int(str(label.cget("wraplength")))
    assert 450 < narrow < 600  # the window's room, not the 300 it was made with
    root.geometry("1200x300")
    settle(root)
    wide = int(str(label.cget("wraplength")))
    assert wide > narrow + 500 and label.winfo_rootx() + label.winfo_width() <= root.winfo_rootx() + 1200


def test_a_known_portal_is_shown_and_only_the_code_is_asked(root, tmp_path, monkeypatch):
    theme.apply_theme(root)
    monkeypatch.setenv("PICTOR_SERVER_URL", "https://portal.example.com")
    view = PairingView(root, config_mod.load(None, tmp_path / "data"), on_paired=lambda cfg: None)
    view.pack(fill="both", expand=True)
    settle(root)
    assert view.server_shown.winfo_ismapped() and not view.server_entry.winfo_ismapped()
    assert str(view.server_shown.cget("text")) == "https://portal.example.com"
    assert root.focus_get() in (view.code_entry, None)
    view.edit_server()
    settle(root)
    assert view.server_entry.winfo_ismapped() and not view.server_shown.winfo_ismapped()
    monkeypatch.delenv("PICTOR_SERVER_URL")
    monkeypatch.setattr("sys.executable", str(tmp_path / "nowhere" / "python"))
    asked = PairingView(root, config_mod.load(None, tmp_path / "other"), on_paired=lambda cfg: None)
    asked.pack()
    settle(root)
    assert asked.server_entry.winfo_ismapped() and not asked.change_server.winfo_ismapped()
