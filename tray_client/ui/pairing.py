"""First run: pair this computer with the portal, by pairing code (plus server URL) or by importing the
config file downloaded from the portal. The network calls run on a thread; Tk only polls for the answer."""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Callable

from .. import config as config_mod
from ..api import PortalClient, PortalError, PortalUnreachable

SERVER_FILE = "server_url.txt"  # an installer may leave the portal's address here, beside Python


class PairingError(Exception):
    """Pairing did not work; str() tells the provider what to do."""


def default_server_url(cfg: config_mod.WorkerConfig) -> str:
    """The address to prefill: the config's, then $PICTOR_SERVER_URL, then the installer's file."""
    if cfg.server_url:
        return cfg.server_url
    if os.environ.get("PICTOR_SERVER_URL"):
        return os.environ["PICTOR_SERVER_URL"].strip()
    try:
        return (Path(sys.executable).parent / SERVER_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def explain(exc: BaseException, server: str) -> str:
    """A portal or network failure in words a provider can act on."""
    if isinstance(exc, PortalUnreachable):
        return (f"Cannot reach {server}: {str(exc).split(': ', 1)[-1]}. Check the server address and "
                "your internet connection, then try again.")
    if isinstance(exc, PortalError):
        if exc.code == "invalid_code":
            return f"Wrong pairing code. {exc.message}"
        if exc.code == "expired_code":
            return f"Expired pairing code. {exc.message}"
        if exc.status == 429:
            return "Too many attempts: wait a minute, then try again."
        if exc.status in (401, 403):
            return f"The portal refused this config ({exc.message}): download a fresh one from the portal."
        if exc.status == 404 or exc.code == "bad_response":
            return f"{server} does not look like a Pictor portal: check the server address."
        return f"The portal said: {exc.message}"
    return str(exc)


def pair_with_code(cfg: config_mod.WorkerConfig, server: str, code: str) -> config_mod.WorkerConfig:
    """Trade a pairing code for credentials and save them into cfg's file. Blocking: call off the UI thread."""
    try:
        server = config_mod.normalize_server_url(server)
    except config_mod.ConfigError:
        raise PairingError("Type the server's full address, starting with https:// "
                           "(e.g. https://portal.example.com).") from None
    code = (code or "").strip()
    if not code:
        raise PairingError("Type the pairing code shown on the worker's page in the portal (like ABCD-EF23).")
    client = PortalClient(server, timeout=(5.0, 20.0), attempts=1)
    try:
        doc = client.pair(code)
    except (PortalUnreachable, PortalError) as exc:
        raise PairingError(explain(exc, server)) from None
    finally:
        client.close()
    # The portal may know itself by another address than the one we reached it at: keep ours.
    try:
        return config_mod.import_document({**doc, "server_url": server}, cfg, "the portal's answer")
    except config_mod.ConfigError as exc:
        raise PairingError(str(exc)) from None


def import_config_file(cfg: config_mod.WorkerConfig, source: Path) -> config_mod.WorkerConfig:
    """Check a downloaded config file against its portal, then save its credentials into cfg's file."""
    try:
        doc = json.loads(Path(source).read_text(encoding="utf-8"))
        fields = config_mod.parse_document(doc, Path(source).name)
    except OSError as exc:
        raise PairingError(f"Cannot read {source}: {exc.strerror or exc}") from None
    except ValueError:
        raise PairingError(f"{Path(source).name} is not a Pictor Worker config file (not JSON).") from None
    except config_mod.ConfigError as exc:
        raise PairingError(str(exc)) from None
    client = PortalClient(fields["server_url"], fields["token"], timeout=(5.0, 20.0), attempts=1)
    try:
        client.settings()  # proves the token works before we rely on it
    except (PortalUnreachable, PortalError) as exc:
        raise PairingError(explain(exc, fields["server_url"])) from None
    finally:
        client.close()
    return config_mod.import_document(doc, cfg, Path(source).name)


class PairingView(ttk.Frame):
    """The pairing form; calls on_paired(cfg) on the Tk thread once the credentials are saved."""

    POLL_MS = 100

    def __init__(self, master, cfg: config_mod.WorkerConfig,
                 on_paired: Callable[[config_mod.WorkerConfig], None]):
        super().__init__(master, padding=(28, 24), style="Page.TFrame")
        self.cfg = cfg
        self.on_paired = on_paired
        self._answers: queue.Queue = queue.Queue()
        self.server = tk.StringVar(value=default_server_url(cfg))
        self.code = tk.StringVar()
        self.status = tk.StringVar()

        ttk.Label(self, text="Connect this computer to Pictor", style="PageTitle.TLabel").grid(
            row=0, column=0, columnspan=3, sticky="w")
        ttk.Label(self, style="Muted.TLabel", wraplength=460, justify="left", text=(
            "In the portal, open Workers → New Worker. It shows a pairing code (valid for 15 minutes) "
            "and offers the worker's config file. Use either one here.")).grid(
            row=1, column=0, columnspan=3, sticky="w", pady=(4, 16))

        ttk.Label(self, text="Server URL", style="Field.TLabel").grid(row=2, column=0, sticky="w", pady=4)
        self.server_entry = ttk.Entry(self, textvariable=self.server, width=42)
        self.server_entry.grid(row=2, column=1, columnspan=2, sticky="we", pady=4)
        ttk.Label(self, text="Pairing code", style="Field.TLabel").grid(row=3, column=0, sticky="w", pady=4)
        self.code_entry = ttk.Entry(self, textvariable=self.code, width=16, font="PictorMono")
        self.code_entry.grid(row=3, column=1, sticky="w", pady=4)
        self.pair_button = ttk.Button(self, text="Pair", style="Accent.TButton", command=self.submit)
        self.pair_button.grid(row=3, column=2, sticky="e", pady=4, padx=(8, 0))

        ttk.Separator(self).grid(row=4, column=0, columnspan=3, sticky="we", pady=14)
        ttk.Label(self, text="Already downloaded the config file?", style="Muted.TLabel").grid(
            row=5, column=0, columnspan=2, sticky="w")
        self.import_button = ttk.Button(self, text="Import config file…", command=self.choose_file)
        self.import_button.grid(row=5, column=2, sticky="e")

        self.status_label = ttk.Label(self, textvariable=self.status, style="Error.TLabel", wraplength=460,
                                      justify="left")
        self.status_label.grid(row=6, column=0, columnspan=3, sticky="w", pady=(16, 0))
        self.progress = ttk.Progressbar(self, mode="indeterminate", length=200)
        self.columnconfigure(1, weight=1)

        for entry in (self.server_entry, self.code_entry):
            entry.bind("<Return>", lambda _e: self.submit())
        (self.code_entry if self.server.get() else self.server_entry).focus_set()

    def _busy(self, text: str) -> None:
        self.status.set("")
        self.status_label.configure(style="Muted.TLabel")
        self.status.set(text)
        for widget in (self.pair_button, self.import_button, self.server_entry, self.code_entry):
            widget.state(["disabled"])
        self.progress.grid(row=7, column=0, columnspan=3, sticky="w", pady=(8, 0))
        self.progress.start(12)

    def _idle(self) -> None:
        self.progress.stop()
        self.progress.grid_remove()
        for widget in (self.pair_button, self.import_button, self.server_entry, self.code_entry):
            widget.state(["!disabled"])

    def submit(self) -> None:
        if "disabled" in self.pair_button.state():
            return
        server, code = self.server.get(), self.code.get()
        self._busy(f"Pairing with {server.strip() or 'the portal'}…")
        self._run(lambda: pair_with_code(self.cfg, server, code))

    def choose_file(self) -> None:
        path = filedialog.askopenfilename(parent=self, title="Choose the worker's config file",
                                          filetypes=[("Pictor Worker config", "*.json"), ("All files", "*")])
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        self._busy(f"Checking {path.name} with its portal…")
        self._run(lambda: import_config_file(self.cfg, path))

    def _run(self, work: Callable[[], config_mod.WorkerConfig]) -> None:
        def target():
            try:
                self._answers.put((work(), None))
            except PairingError as exc:
                self._answers.put((None, str(exc)))
            except Exception as exc:  # shown, never swallowed: the provider must know it failed
                self._answers.put((None, f"Pairing failed: {exc}"))
        threading.Thread(target=target, name="pictor-pairing", daemon=True).start()
        self.after(self.POLL_MS, self._poll)

    def _poll(self) -> None:
        try:
            cfg, error = self._answers.get_nowait()
        except queue.Empty:
            self.after(self.POLL_MS, self._poll)
            return
        self._idle()
        if error:
            self.status_label.configure(style="Error.TLabel")
            self.status.set(error)
            self.code_entry.focus_set()
            self.code_entry.select_range(0, "end")
            return
        self.status_label.configure(style="Ok.TLabel")
        self.status.set(f"Paired as worker {cfg.worker_id}.")
        self.on_paired(cfg)
