"""The first-run pairing form: a pairing code (plus server URL) or the config file downloaded from the
portal. The work is tray_client.pairing's, on a thread; Tk only polls for the answer."""

from __future__ import annotations

import queue
import threading
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Callable

from .. import config as config_mod
from ..pairing import PairingError, default_server_url, import_config_file, pair_with_code


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
        known = bool(self.server.get())
        ttk.Label(self, style="Muted.TLabel", wraplength=460, justify="left", text=(
            "Type the pairing code from the portal's New Worker page (valid for 15 minutes), or import "
            "the worker's config file." if known else
            "In the portal, open Workers → New Worker. It shows a pairing code (valid for 15 minutes) "
            "and offers the worker's config file. Use either one here.")).grid(
            row=1, column=0, columnspan=3, sticky="w", pady=(4, 16))

        # A portal address that came with the installer (or from the config) is shown, not asked for:
        # the first run then asks only for the code; "Change…" opens the field.
        ttk.Label(self, text="Portal" if known else "Server URL", style="Field.TLabel").grid(
            row=2, column=0, sticky="w", pady=4, padx=(0, 12))
        self.server_entry = ttk.Entry(self, textvariable=self.server, width=42)
        self.server_shown = ttk.Label(self, textvariable=self.server, style="Value.TLabel")
        self.change_server = ttk.Button(self, text="Change…", command=self.edit_server)
        if known:
            self.server_shown.grid(row=2, column=1, sticky="w", pady=4)
            self.change_server.grid(row=2, column=2, sticky="e", pady=4, padx=(8, 0))
        else:
            self.server_entry.grid(row=2, column=1, columnspan=2, sticky="we", pady=4)
        ttk.Label(self, text="Pairing code", style="Field.TLabel").grid(row=3, column=0, sticky="w", pady=4,
                                                                       padx=(0, 12))
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

    def edit_server(self) -> None:
        self.server_shown.grid_remove()
        self.change_server.grid_remove()
        self.server_entry.grid(row=2, column=1, columnspan=2, sticky="we", pady=4)
        self.server_entry.focus_set()
        self.server_entry.select_range(0, "end")

    def _busy(self, text: str) -> None:
        self.status.set("")
        self.status_label.configure(style="Muted.TLabel")
        self.status.set(text)
        for widget in (self.pair_button, self.import_button, self.server_entry, self.code_entry,
                       self.change_server):
            widget.state(["disabled"])
        self.progress.grid(row=7, column=0, columnspan=3, sticky="w", pady=(8, 0))
        self.progress.start(12)

    def _idle(self) -> None:
        self.progress.stop()
        self.progress.grid_remove()
        for widget in (self.pair_button, self.import_button, self.server_entry, self.code_entry,
                       self.change_server):
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
