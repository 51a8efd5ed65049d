"""Helpers for the desktop UI tests: one real portal shared by the UI test modules, a virtual X
display (Xvfb) with screenshots and xdotool, and a scene slow enough to watch render."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import missing
from tests.tray_client.portal_fixture import Portal

_PORTAL: Portal | None = None


def shared_portal(request, tmp_path_factory) -> Portal:
    """The real portal (a subprocess), started once per test session: it takes ~20 s to set up."""
    global _PORTAL
    if _PORTAL is None:
        portal = Portal(tmp_path_factory.mktemp("ui-portal")).start()
        request.session.config.add_cleanup(portal.close)
        _PORTAL = portal
    return _PORTAL


def worker_settings(portal: Portal, token: str) -> dict:
    """GET /worker/settings as the worker itself (what the portal stored for it)."""
    import requests
    response = requests.get(f"{portal.url}/api/v1/worker/settings",
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text[:300]
    return response.json()


class Display:
    """An Xvfb server on a free display number, for a real Tk window."""

    def __init__(self, width: int = 1024, height: int = 768):
        for tool in ("Xvfb", "xdotool"):
            if shutil.which(tool) is None:
                missing(f"{tool} is not installed (apt-get install xvfb xdotool)")
        # -displayfd: Xvfb picks a free display itself and writes its number once it accepts clients,
        # so parallel runs never race for the same one.
        read, write = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
                                      "-nolisten", "tcp"], pass_fds=(write,),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number.isdigit():
            raise RuntimeError("Xvfb did not start")
        self.name = f":{number}"
        self.env = {**os.environ, "DISPLAY": self.name}

    def xdotool(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=20)
        if check and done.returncode != 0:
            raise AssertionError(f"xdotool {' '.join(args)}: {done.stderr}")
        return done.stdout.strip()

    def find_window(self, name: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdotool("search", "--onlyvisible", "--name", name, check=False).split()
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no window named {name!r} appeared")

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a window on the screen."""
        values = dict(line.split("=", 1) for line in
                      self.xdotool("getwindowgeometry", "--shell", window).splitlines() if "=" in line)
        x, y, w, h = (int(values[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        return x, y, x + w, y + h

    def screenshot(self, bbox: tuple[int, int, int, int] | None = None):
        from PIL import ImageGrab
        return ImageGrab.grab(bbox=bbox, xdisplay=self.name).convert("RGB")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def count_colour(image, rgb: tuple[int, int, int], tolerance: int = 8) -> int:
    """How many pixels of image have every channel within tolerance of rgb (the progress bar's fill)."""
    from PIL import Image, ImageChops
    diff = ImageChops.difference(image.convert("RGB"), Image.new("RGB", image.size, rgb))
    masks = [band.point(lambda v: 255 if v <= tolerance else 0) for band in diff.split()]
    both = ImageChops.multiply(ImageChops.multiply(masks[0], masks[1]), masks[2])
    return both.histogram()[255]


def differs(a, b, threshold: float = 1.0) -> bool:
    """Whether two screenshots differ visibly (mean absolute difference over all pixels and channels)."""
    from PIL import ImageChops, ImageStat
    if a.size != b.size:
        return True
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3 > threshold


class FakeSystemTray:
    """Owns the X11 system-tray selection, as a desktop's notification area does, so that the app
    believes a tray exists (pystray docks into it; nothing is drawn)."""

    def __init__(self, display_name: str):
        from Xlib import X
        from Xlib import display as xdisplay
        self.conn = xdisplay.Display(display_name)
        screen = self.conn.screen()
        self.window = screen.root.create_window(0, 0, 1, 1, 0, screen.root_depth)
        atom = self.conn.intern_atom(f"_NET_SYSTEM_TRAY_S{self.conn.get_default_screen()}")
        self.window.set_selection_owner(atom, X.CurrentTime)
        self.conn.sync()
        assert self.conn.get_selection_owner(atom) == self.window

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()  # the selection goes with the connection: "the tray has gone"
            self.conn = None


def hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
