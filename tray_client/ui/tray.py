"""The tray icon: state colour and glyph, a menu (Open, Open Dashboard, Pause, Quit) and task
notifications. pystray runs in a daemon thread beside Tk's mainloop; without it the window works alone."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from ..engine import State
from .icons import state_icon

log = logging.getLogger(__name__)

try:
    import pystray
    PYSTRAY_ERROR: str | None = None
except Exception as exc:  # without a display pystray's Xlib backend raises Xlib errors, not ImportError
    pystray = None
    PYSTRAY_ERROR = f"{exc.__class__.__name__}: {exc}"


def backend_name() -> str | None:
    """'win32', 'xorg', 'gtk', 'appindicator', 'darwin' or 'dummy'; None without pystray."""
    if pystray is None:
        return None
    name = pystray.Icon.__module__.rsplit("._", 1)[-1]
    return "dummy" if name == "base" else name  # the dummy backend is pystray's abstract base Icon


def _x11_tray_present() -> bool:
    """Whether an X11 notification area is running: pystray's xorg backend cannot dock without one."""
    try:
        from Xlib import X
        from Xlib import display as xdisplay
        conn = xdisplay.Display()
    except Exception:
        return False
    try:
        atom = conn.intern_atom(f"_NET_SYSTEM_TRAY_S{conn.get_default_screen()}")
        return conn.get_selection_owner(atom) != X.NONE
    except Exception:
        return False
    finally:
        conn.close()


class Tray:
    """One tray icon. Menu callbacks run on pystray's thread: the ones given here must only queue work
    for the UI thread (or be thread-safe, like Engine.pause)."""

    def __init__(self, *, is_paused: Callable[[], bool], status_text: Callable[[], str],
                 on_open: Callable[[], None], on_dashboard: Callable[[], None],
                 on_toggle_pause: Callable[[], None], on_quit: Callable[[], None]):
        self.is_paused = is_paused
        self.status_text = status_text
        self.on_open = on_open
        self.on_dashboard = on_dashboard
        self.on_toggle_pause = on_toggle_pause
        self.on_quit = on_quit
        self.icon = None
        self.state: State | None = None
        self.thread: threading.Thread | None = None
        self.unavailable_reason: str | None = PYSTRAY_ERROR

    # --- the menu ------------------------------------------------------------------------------

    def build_menu(self):
        item, menu = pystray.MenuItem, pystray.Menu
        return menu(
            item(lambda _item: self.status_text(), None, enabled=False),
            menu.SEPARATOR,
            item("Open", lambda: self.on_open(), default=True),
            item("Open Dashboard", lambda: self.on_dashboard()),
            item("Pause", lambda: self.on_toggle_pause(), checked=lambda _item: self.is_paused()),
            menu.SEPARATOR,
            item("Quit", lambda: self.on_quit()),
        )

    def create(self, state: State = State.OFFLINE, title: str = "Pictor Worker"):
        """Make the pystray Icon without running it (tests call its menu items directly)."""
        if pystray is None:
            return None
        self.state = state
        self.icon = pystray.Icon("pictor-worker", state_icon(state), title, menu=self.build_menu())
        return self.icon

    # --- running -------------------------------------------------------------------------------

    def start(self, state: State = State.OFFLINE, title: str = "Pictor Worker") -> bool:
        """Show the icon; False (with unavailable_reason) when this desktop has no tray to show it in."""
        backend = backend_name()
        if backend is None:
            return False
        if backend == "dummy":
            self.unavailable_reason = "PYSTRAY_BACKEND=dummy shows nothing"
            return False
        if backend == "darwin":  # its event loop must own the main thread, which Tk has
            self.unavailable_reason = "the macOS menu-bar icon is not supported yet"
            return False
        if backend == "xorg" and not _x11_tray_present():
            self.unavailable_reason = "no system tray (notification area) is running on this X display"
            return False
        try:
            self.create(state, title)
        except Exception as exc:
            self.unavailable_reason = f"the tray icon failed: {exc}"
            log.warning("no tray icon: %s", exc)
            self.icon = None
            return False
        self.thread = threading.Thread(target=self._run, name="pictor-tray", daemon=True)
        self.thread.start()
        return True

    def _run(self) -> None:
        try:
            self.icon.run()
        except Exception:
            log.exception("the tray icon stopped")

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def update(self, state: State, title: str) -> None:
        """New state or tooltip: redraw the icon and refresh the menu's checkmark and status line."""
        if self.icon is None:
            return
        title = title[:120]  # Windows cuts tooltips at 128 characters
        if state == self.state and title == self.icon.title:
            return
        try:
            if state != self.state:
                self.state = state
                self.icon.icon = state_icon(state)
            self.icon.title = title
            self.icon.update_menu()  # the status line and the Pause checkmark
        except NotImplementedError:  # the dummy backend draws nothing
            pass
        except Exception:
            log.exception("tray update failed")

    def notify(self, title: str, message: str) -> bool:
        """A desktop notification where the backend has them; False when it could not be shown."""
        if self.icon is None or not getattr(self.icon, "HAS_NOTIFICATION", False) or not self.running:
            return False
        try:
            self.icon.notify(message, title)
            return True
        except Exception:
            log.debug("notification failed", exc_info=True)
            return False

    def stop(self) -> None:
        if self.icon is not None and self.running:
            try:
                self.icon.stop()
            except Exception:
                log.debug("tray stop failed", exc_info=True)
