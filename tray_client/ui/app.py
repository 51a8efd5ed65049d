"""`pictor-worker gui`: Tk's mainloop on the main thread, the engine on its own thread, the tray icon on
pystray's; the window drains the engine's events every PUMP_MS with after(), so it never blocks."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import signal
import sys
import threading
import time
import tkinter as tk
import webbrowser
from tkinter import messagebox

from .. import config as config_mod
from ..engine import EXIT_AUTH, Engine, EngineError
from ..untrusted import SafeFormatter
from .pairing import PairingView
from .tray import Tray
from .viewmodel import STATE_TITLES, Controller
from .theme import apply_theme, enable_dpi_awareness, scaled_geometry, set_min_size
from .window import MainWindow

log = logging.getLogger(__name__)

PUMP_MS = 200
MAIN_SIZE = "800x720"  # at 100%: theme.scaled_geometry grows them with the screen's scaling
MAIN_MIN_SIZE = (700, 560)
PAIRING_SIZE = "600x400"
PAIRING_MIN_SIZE = (480, 360)


class App:
    """Owns the Tk root, the engine, the controller, the window and the tray."""

    def __init__(self, root: tk.Tk, cfg: config_mod.WorkerConfig, *, use_tray: bool = True):
        self.root = root
        self.cfg = cfg
        self.use_tray = use_tray
        self.engine: Engine | None = None
        self.controller: Controller | None = None
        self.window: MainWindow | None = None
        self.tray: Tray | None = None
        self.commands: queue.Queue[str] = queue.Queue()  # from other threads: "open", "toggle", "quit"
        self.exit_code = 0
        self._pairing: PairingView | None = None
        self._told_about_tray = False
        self._last_tick = 0.0
        self._quitting = False
        self._finished = False

    # --- start-up -------------------------------------------------------------------------------

    def begin(self) -> None:
        if self.cfg.paired:
            self.start()
        else:
            self.show_pairing()
        self.root.after(PUMP_MS, self.pump)

    def show_pairing(self) -> None:
        self.root.title("Pictor Worker · Pair this computer")
        self.root.geometry(scaled_geometry(self.root, PAIRING_SIZE))
        set_min_size(self.root, *PAIRING_MIN_SIZE)
        self.root.protocol("WM_DELETE_WINDOW", self.quit)
        self._pairing = PairingView(self.root, self.cfg, on_paired=self._paired)
        self._pairing.pack(fill="both", expand=True)
        self.show()

    def _paired(self, cfg: config_mod.WorkerConfig) -> None:
        self.cfg = cfg
        if self._pairing is not None:
            self._pairing.destroy()
            self._pairing = None
        self.start()

    def start(self) -> None:
        try:
            self.engine = Engine(self.cfg)
        except EngineError as exc:
            messagebox.showerror("Pictor Worker", str(exc), parent=self.root)
            self.exit_code = exc.exit_code
            self.root.destroy()
            return
        self.controller = Controller(self.engine, self.cfg)
        self.engine.start()
        self.controller.mining = self._start_mining()
        self.root.geometry(scaled_geometry(self.root, MAIN_SIZE))
        set_min_size(self.root, *MAIN_MIN_SIZE)
        self.window = MainWindow(self.root, self.controller, on_close=self.close_window, on_quit=self.quit,
                                 on_pair_again=self.pair_again, on_dashboard=self.open_dashboard)
        self.window.render(force=True)
        if self.use_tray:
            self.tray = Tray(is_paused=lambda: self.controller.vm.paused, status_text=self._tray_status,
                             on_open=lambda: self.commands.put("open"), on_dashboard=self.open_dashboard,
                             on_toggle_pause=lambda: self.commands.put("toggle"),
                             on_quit=lambda: self.commands.put("quit"))
            if not self.tray.start(self.controller.vm.state, "Pictor Worker"):
                log.info("no tray icon (%s): the window works alone; closing it quits",
                         self.tray.unavailable_reason)
        self.show()

    # --- the pump -------------------------------------------------------------------------------

    def pump(self) -> None:
        """Every PUMP_MS on the Tk thread: commands from other threads, engine events, redraw."""
        try:
            self._pump_once()
        except Exception:  # keep pumping: a bad frame must not freeze the window
            log.exception("UI update failed")
        try:
            self.root.after(PUMP_MS, self.pump)
        except tk.TclError:  # the root is gone
            pass

    def _pump_once(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                break
            {"open": self.show, "toggle": self._toggle, "quit": self.quit}.get(command, lambda: None)()
        if self.controller is None or self.window is None:
            return
        version = self.controller.vm.version
        notes = self.controller.drain()
        if self._finished:  # Quit completed inside drain(): the widgets are gone
            return
        vm = self.controller.vm
        vm.needs_pairing = self.engine is not None and self.engine.exit_code == EXIT_AUTH
        now = time.monotonic()
        if vm.version != version or now - self._last_tick >= 1.0:
            self._last_tick = now
            self.window.render()
            if self.tray is not None:
                self.tray.update(vm.state, self._tray_status())
        for note in notes:
            shown = self.tray is not None and self.tray.notify(note.title, note.message)
            if not shown or self.root.state() != "withdrawn":
                self.window.flash(note.message)

    def _toggle(self) -> None:
        if self.controller is not None:
            self.controller.toggle_pause()

    def _tray_status(self) -> str:
        vm = self.controller.vm
        text = STATE_TITLES.get(vm.state, vm.state)
        if vm.busy:
            text += f": task {vm.snapshot.task_id} at {vm.progress:.0%}"
        return f"Pictor Worker · {text}"

    # --- window, browser, quit --------------------------------------------------------------------

    def show(self) -> None:
        self.root.deiconify()
        self.root.lift()
        # Once mapped (focus on an unmapped window is lost): -force takes the keyboard even without a
        # window manager; it goes to the widget that last had it (the pairing code, the bid being typed).
        self.root.after(150, self._take_focus)

    def _take_focus(self) -> None:
        try:
            (self.root.focus_lastfor() or self.root).focus_force()
        except tk.TclError:
            pass

    def close_window(self) -> None:
        """The window's close button: hide to the tray when there is one, else quit."""
        if self.tray is not None and self.tray.running:
            self.root.withdraw()
            if not self._told_about_tray:
                self._told_about_tray = True
                self.tray.notify("Pictor Worker keeps working",
                                 "It runs in the tray; choose Quit there to stop it.")
        else:
            self.quit()

    def open_dashboard(self) -> None:
        url = self.controller.vm.dashboard_url() if self.controller else None
        if url:
            # Some browsers' launchers wait for the browser: never on the Tk or tray thread.
            threading.Thread(target=webbrowser.open, args=(url,), name="pictor-browser", daemon=True).start()

    def pair_again(self) -> None:
        """The portal refused our token: pair again in a dialog, then start a fresh engine."""
        dialog = tk.Toplevel(self.root)
        dialog.title("Pair this computer again")
        dialog.transient(self.root)

        def paired(cfg):
            dialog.destroy()
            self.cfg = cfg
            self.engine = Engine(cfg)
            self.controller.replace_engine(self.engine, cfg)
            self.engine.start()
        PairingView(dialog, self.cfg, on_paired=paired).pack(fill="both", expand=True)

    def _start_mining(self):
        """The miner's supervisor beside the engine: idle means no input for the mining section's minutes."""
        from .. import mining
        from .system import idle_probe
        probe, reason = idle_probe()
        try:
            return mining.attach(self.engine, self.cfg, idle_probe=probe, idle_reason=reason)
        except Exception:  # mining is optional: the worker runs without it
            log.exception("the miner's supervisor could not start")
            return None

    def quit(self) -> None:
        """Stop the engine cleanly (a running task is handed back), then close everything."""
        if self._quitting:
            return
        self._quitting = True
        if self.controller is None:
            self._finish()
            return
        log.info("quitting: stopping the engine")
        self.controller.stop(self._finish)
        if self.window is not None:
            self.window.render(force=True)

    def _finish(self) -> None:
        self._finished = True
        if self.tray is not None:
            self.tray.stop()
        try:
            self.root.destroy()
        except tk.TclError:
            pass


def _setup_logging(cfg: config_mod.WorkerConfig) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.WARNING)
    errors.setFormatter(fmt)
    root.addHandler(errors)
    try:
        cfg.logs_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(cfg.logs_dir / "worker.log", maxBytes=5 * 2**20,
                                                       backupCount=3, encoding="utf-8")
        handler.setFormatter(fmt)
        root.addHandler(handler)
    except OSError as exc:
        log.warning("no log file: %s", exc)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retry warnings are ours to explain


def main(config_path=None, data_dir=None) -> int:
    try:
        cfg = config_mod.load(config_path, data_dir)
    except config_mod.ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(cfg)
    enable_dpi_awareness()
    try:
        root = tk.Tk(className="PictorWorker")
    except tk.TclError as exc:
        print(f"Error: the window cannot open here ({exc}); use `pictor-worker run --headless`",
              file=sys.stderr)
        return 2
    root.withdraw()
    apply_theme(root)
    app = App(root, cfg)
    # Ctrl+C in a terminal, or a logout's SIGTERM: the same clean stop as Quit. Tk returns to Python
    # at every after() tick, so the handler runs within PUMP_MS.
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: app.commands.put("quit"))
    app.begin()
    root.mainloop()
    if app.engine is not None:
        app.engine.stop(hand_back=True)
        app.engine.join(30)
    return app.exit_code
