"""The main window: a header coloured by state and a ttk.Notebook with the Computing, Mining and
Settings tabs. It only reads the ViewModel and calls the Controller; nothing here waits on the network."""

from __future__ import annotations

import tkinter as tk
from tkinter import filedialog, font as tkfont, ttk
from typing import Callable

from PIL import Image, ImageDraw, ImageTk

from ..engine import State
from .icons import app_icon, colour, state_icon
from .theme import px
from .viewmodel import MINER_CHOICES, STATE_TITLES, Controller, ViewModel, money, usd

BG = "#f3f4f6"
CARD = "#ffffff"
TEXT = "#111827"
MUTED = "#6b7280"
BORDER = "#d1d5db"
ACCENT = "#2563eb"
PROGRESS = "#0ea5e9"  # used by the progress bar only: the window test finds the bar by this colour
OK = "#15803d"
ERROR = "#b91c1c"
WARN_BG = "#fef3c7"
LABEL_COLUMN = 150  # pixels: the field names line up across tabs and sections
FEEDBACK_STYLES = {"ok": "Ok.TLabel", "error": "Error.TLabel", "busy": "Muted.TLabel"}


def apply_style(root: tk.Misc, base: str = "clam") -> ttk.Style:
    """The app's styles on top of a base theme (theme.apply_theme picks Sun Valley): readable fonts,
    white pages on a light grey window."""
    style = ttk.Style(root)
    if style.theme_use() != base:
        style.theme_use(base)
    default = tkfont.nametofont("TkDefaultFont")
    default.configure(size=10)
    for name in ("TkTextFont", "TkMenuFont"):
        tkfont.nametofont(name).configure(size=10)
    family = default.actual("family")
    fonts = {"PictorTitle": dict(size=15, weight="bold"), "PictorH2": dict(size=11, weight="bold"),
             "PictorValue": dict(size=10, weight="bold"), "PictorSmall": dict(size=9),
             "PictorBig": dict(size=13, weight="bold")}
    # A Font object deletes its Tk font when garbage-collected: keep them with the root.
    kept = root.__dict__.setdefault("_pictor_fonts", {})
    for name, options in fonts.items():
        if name not in kept:
            kept[name] = tkfont.Font(root, name=name, family=family, exists=False, **options)
    if "PictorMono" not in kept:
        mono = tkfont.nametofont("TkFixedFont").actual()
        kept["PictorMono"] = tkfont.Font(root, name="PictorMono", family=mono["family"], size=11, exists=False)

    root.configure(background=BG)
    style.configure(".", background=CARD, foreground=TEXT, bordercolor=BORDER, focuscolor=ACCENT)
    style.configure("TFrame", background=CARD)
    style.configure("Page.TFrame", background=CARD)
    style.configure("Window.TFrame", background=BG)
    style.configure("Status.TFrame", background="#f9fafb")
    style.configure("TLabel", background=CARD, foreground=TEXT)
    style.configure("PageTitle.TLabel", font="PictorTitle")
    style.configure("H2.TLabel", font="PictorH2")
    style.configure("Field.TLabel", foreground=MUTED)
    style.configure("Value.TLabel", font="PictorValue")
    style.configure("Big.TLabel", font="PictorBig")
    style.configure("Muted.TLabel", foreground=MUTED)
    style.configure("Ok.TLabel", foreground=OK)
    style.configure("Error.TLabel", foreground=ERROR)
    style.configure("StatusTitle.TLabel", background="#f9fafb", font="PictorH2")
    style.configure("StatusText.TLabel", background="#f9fafb", foreground="#374151")
    style.configure("Footer.TLabel", background=BG, foreground=MUTED, font="PictorSmall")
    style.configure("Banner.TLabel", background="#dcfce7", foreground="#14532d", padding=(10, 4))
    style.configure("Beta.TLabel", background=WARN_BG, foreground="#92400e", font="PictorSmall",
                    padding=(6, 1))
    style.configure("Warn.TLabel", background=WARN_BG, foreground="#78350f", padding=(10, 8))
    style.configure("TNotebook", background=BG, borderwidth=0, tabmargins=(12, 8, 12, 0))
    style.configure("TNotebook.Tab", background="#e5e7eb", foreground=MUTED, padding=(18, 7),
                    borderwidth=0)
    style.map("TNotebook.Tab", background=[("selected", CARD), ("active", "#eef2f7")],
              foreground=[("selected", TEXT)], expand=[("selected", (0, 2, 0, 0))])
    style.configure("TButton", padding=(10, 4), background="#f9fafb", width=-6)
    style.map("TButton", background=[("disabled", "#f3f4f6"), ("active", "#eef2f7")])
    style.configure("Accent.TButton", background=ACCENT, foreground="#ffffff", bordercolor=ACCENT,
                    lightcolor=ACCENT, darkcolor=ACCENT)
    style.map("Accent.TButton", background=[("disabled", "#93c5fd"), ("active", "#1d4ed8")],
              bordercolor=[("disabled", "#93c5fd")], lightcolor=[("disabled", "#93c5fd")],
              darkcolor=[("disabled", "#93c5fd")],
              foreground=[("disabled", "#eff6ff")])
    style.configure("Header.TButton", padding=(14, 6), background="#ffffff", bordercolor="#ffffff",
                    lightcolor="#ffffff", darkcolor="#ffffff", font="PictorValue")
    style.map("Header.TButton", background=[("active", "#f3f4f6")])
    style.configure("TEntry", fieldbackground=CARD, padding=(6, 4))
    style.map("TEntry", fieldbackground=[("disabled", "#f3f4f6")], foreground=[("disabled", MUTED)])
    style.configure("TCheckbutton", background=CARD)
    style.map("TCheckbutton", background=[("active", CARD)])
    style.configure("TSpinbox", fieldbackground=CARD, padding=(4, 3))
    style.configure("TSeparator", background="#e5e7eb")
    style.configure("Pictor.Horizontal.TProgressbar", troughcolor="#e5e7eb", background=PROGRESS,
                    bordercolor="#e5e7eb", lightcolor=PROGRESS, darkcolor=PROGRESS, thickness=14)
    style.configure("Bench.Horizontal.TProgressbar", troughcolor="#e5e7eb", background=ACCENT,
                    bordercolor="#e5e7eb", lightcolor=ACCENT, darkcolor=ACCENT, thickness=6)
    return style


def header_badge(state: State, size: int = 44) -> Image.Image:
    """The state icon on a white disc, so it stays visible on the header's state colour."""
    badge = Image.new("RGBA", (size * 4, size * 4), (0, 0, 0, 0))
    ImageDraw.Draw(badge).ellipse([0, 0, size * 4 - 1, size * 4 - 1], fill="#ffffff")
    badge = badge.resize((size, size), Image.LANCZOS)
    inner = state_icon(state, size - 12)
    badge.alpha_composite(inner, (6, 6))
    return badge


class _Feedback(ttk.Label):
    """A label that shows an action's outcome ("Saved", an error) in the matching colour."""

    def __init__(self, master, **kwargs):
        super().__init__(master, style="Muted.TLabel", wraplength=560, justify="left", **kwargs)
        self._shown: object = ()  # nothing shown yet: the first show() always applies

    def show(self, feedback: tuple[str, str] | None) -> None:
        if feedback == self._shown:
            return
        self._shown = feedback
        kind, text = feedback or ("busy", "")
        self.configure(text=text, style=FEEDBACK_STYLES.get(kind, "Muted.TLabel"))
        if text:
            self.grid()
        else:
            self.grid_remove()  # an empty line would still take a line's height


class _Scrollable(ttk.Frame):
    """A page that scrolls when its content is taller than the window (large fonts, small screens)."""

    def __init__(self, master, padding):
        super().__init__(master, style="Page.TFrame")
        self.canvas = tk.Canvas(self, background=CARD, highlightthickness=0, borderwidth=0)
        self.bar = ttk.Scrollbar(self, orient="vertical", command=self.canvas.yview)
        self.body = ttk.Frame(self.canvas, padding=padding, style="Page.TFrame")
        self._item = self.canvas.create_window(0, 0, window=self.body, anchor="nw")
        self.canvas.configure(yscrollcommand=self.bar.set)
        self.canvas.grid(row=0, column=0, sticky="nsew")
        self.bar.grid(row=0, column=1, sticky="ns")
        self.bar.grid_remove()
        self.rowconfigure(0, weight=1)
        self.columnconfigure(0, weight=1)
        self.body.bind("<Configure>", self._layout)
        self.canvas.bind("<Configure>", self._layout)
        self.bind("<Enter>", lambda _e: self._wheel(True))
        self.bind("<Leave>", lambda _e: self._wheel(False))

    def _layout(self, _event=None) -> None:
        self.canvas.itemconfigure(self._item, width=self.canvas.winfo_width())
        height = self.body.winfo_reqheight()
        self.canvas.configure(scrollregion=(0, 0, self.canvas.winfo_width(), height))
        if height > self.canvas.winfo_height() + 1:
            self.bar.grid()
        else:
            self.bar.grid_remove()
            self.canvas.yview_moveto(0)

    def _wheel(self, active: bool) -> None:
        for sequence in ("<MouseWheel>", "<Button-4>", "<Button-5>"):
            if active:
                self.bind_all(sequence, self._scroll, add=False)
            else:
                self.unbind_all(sequence)

    def _scroll(self, event) -> None:
        if not self.bar.winfo_ismapped():
            return
        if getattr(event, "num", None) in (4, 5):
            step = -1 if event.num == 4 else 1
        else:
            step = -1 if event.delta > 0 else 1  # Windows: multiples of 120; macOS: small numbers
        self.canvas.yview_scroll(step * 3, "units")


class MainWindow:
    """The window's widgets and render(); the App decides when to show, hide and quit."""

    def __init__(self, root: tk.Tk, controller: Controller, *, on_close: Callable[[], None],
                 on_quit: Callable[[], None], on_pair_again: Callable[[], None] | None = None,
                 on_dashboard: Callable[[], None] = lambda: None):
        self.root = root
        self.on_dashboard = on_dashboard
        self.controller = controller
        self.vm: ViewModel = controller.vm
        self.on_pair_again = on_pair_again
        self._rendered_version = -1
        self._form_version = -1
        self._header_state: State | None = None
        self._images: dict[State, ImageTk.PhotoImage] = {}
        self._banner_after: str | None = None

        root.title("Pictor Worker")
        root.protocol("WM_DELETE_WINDOW", on_close)
        self._icon_photo = ImageTk.PhotoImage(app_icon(64))
        root.iconphoto(True, self._icon_photo)

        self.frame = ttk.Frame(root, style="Window.TFrame")
        self.frame.pack(fill="both", expand=True)
        self._build_header()
        self._build_footer()  # packed before the notebook, so the notebook cannot squeeze it out
        self.notebook = ttk.Notebook(self.frame)
        self.notebook.pack(fill="both", expand=True, padx=12)
        self.computing = ttk.Frame(self.notebook, padding=(22, 18), style="Page.TFrame")
        self.mining = ttk.Frame(self.notebook, padding=(22, 18), style="Page.TFrame")
        self.settings_tab = _Scrollable(self.notebook, padding=(22, 12, 22, 16))
        self.settings = self.settings_tab.body
        self.notebook.add(self.computing, text="Computing", underline=0)
        self.notebook.add(self.mining, text="Mining (Beta)", underline=0)
        self.notebook.add(self.settings_tab, text="Settings", underline=0)
        self.notebook.enable_traversal()  # Ctrl+Tab, and Alt+C / Alt+M / Alt+S
        self._build_computing()
        self._build_mining()
        self._build_settings()

        root.bind("<Control-q>", lambda _e: on_quit())
        root.bind("<Alt-b>", lambda _e: self.focus_bid())
        root.bind("<Escape>", lambda _e: on_close())

    # --- building -------------------------------------------------------------------------------

    def _build_header(self) -> None:
        self.header = tk.Frame(self.frame, height=px(self.frame, 76), background=colour(State.OFFLINE))
        self.header.pack(fill="x")
        self.header.pack_propagate(False)
        self.badge = tk.Label(self.header, borderwidth=0, background=colour(State.OFFLINE))
        self.badge.pack(side="left", padx=(18, 12))
        texts = tk.Frame(self.header, background=colour(State.OFFLINE))
        texts.pack(side="left", fill="y", pady=12)
        self.header_texts = texts
        self.header_kicker = tk.Label(texts, text="PICTOR WORKER", font="PictorSmall", anchor="w",
                                      foreground="#ffffff", background=colour(State.OFFLINE))
        self.header_kicker.pack(anchor="w")
        self.header_title = tk.Label(texts, text="Connecting…", font="PictorTitle", anchor="w",
                                     foreground="#ffffff", background=colour(State.OFFLINE))
        self.header_title.pack(anchor="w")
        self.pause_button = ttk.Button(self.header, text="Pause", style="Header.TButton", width=9,
                                       command=self.controller.toggle_pause)
        self.pause_button.pack(side="right", padx=18)

    def _rows(self, parent, labels: list[str], start: int = 0) -> list[ttk.Label]:
        values = []
        parent.columnconfigure(0, minsize=LABEL_COLUMN)
        for i, label in enumerate(labels, start):
            ttk.Label(parent, text=label, style="Field.TLabel").grid(row=i, column=0, sticky="nw", pady=4,
                                                                      padx=(0, 18))
            value = ttk.Label(parent, text="—", style="Value.TLabel", wraplength=520, justify="left")
            value.grid(row=i, column=1, sticky="nw", pady=4)
            values.append(value)
        return values

    def _build_computing(self) -> None:
        page = self.computing
        page.columnconfigure(0, weight=1)
        status = ttk.Frame(page, style="Status.TFrame", padding=(14, 10))
        status.grid(row=0, column=0, sticky="we")
        self.status_strip = tk.Frame(status, width=4, background=colour(State.OFFLINE))
        self.status_strip.pack(side="left", fill="y", padx=(0, 12))
        status_texts = ttk.Frame(status, style="Status.TFrame")
        status_texts.pack(side="left", fill="both", expand=True)
        self.status_title = ttk.Label(status_texts, style="StatusTitle.TLabel")
        self.status_title.pack(anchor="w")
        self.status_hint = ttk.Label(status_texts, style="StatusText.TLabel", wraplength=600, justify="left")
        self.status_hint.pack(anchor="w", pady=(2, 0))
        self.pair_again_button = ttk.Button(status, text="Pair again…", command=self._pair_again)

        ttk.Label(page, text="Current task", style="H2.TLabel").grid(row=1, column=0, sticky="w", pady=(18, 6))
        grid = ttk.Frame(page)
        grid.grid(row=2, column=0, sticky="we")
        grid.columnconfigure(1, weight=1)
        labels = ["Wallet Address", "Job ID", "Job Type", "Task ID"]
        self.computing_values = dict(zip(labels, self._rows(grid, labels)))
        ttk.Label(grid, text="Task Progress", style="Field.TLabel").grid(row=4, column=0, sticky="nw",
                                                                        pady=(8, 4))
        bar_box = ttk.Frame(grid)
        bar_box.grid(row=4, column=1, sticky="we", pady=(8, 4))
        self.progress = ttk.Progressbar(bar_box, style="Pictor.Horizontal.TProgressbar", maximum=1000,
                                        length=420, mode="determinate")
        self.progress.pack(anchor="w")
        self.progress_text = ttk.Label(bar_box, style="Muted.TLabel", wraplength=520)
        self.progress_text.pack(anchor="w", pady=(4, 0))
        labels2 = ["Duration", "ETA", "Reward Estimated"]
        self.computing_values.update(zip(labels2, self._rows(grid, labels2, start=5)))

        ttk.Label(page, text="This worker", style="H2.TLabel").grid(row=3, column=0, sticky="w", pady=(18, 6))
        about = ttk.Frame(page)
        about.grid(row=4, column=0, sticky="we")
        about.columnconfigure(1, weight=1)
        self.about_values = dict(zip(["Portal", "Worker ID"], self._rows(about, ["Portal", "Worker ID"])))
        ttk.Button(about, text="Open Dashboard", command=self.on_dashboard).grid(row=0, column=2, rowspan=2,
                                                                                 sticky="e")
        # Every device slot shared (one task at a time each): its state, task and progress.
        self.devices_title = ttk.Label(page, text="Devices", style="H2.TLabel")
        self.devices_table = ttk.Frame(page)
        self._slot_ids: tuple[str, ...] = ()
        self._slot_cells: list[list[ttk.Label]] = []

    def _build_mining(self) -> None:
        page = self.mining
        page.columnconfigure(0, minsize=LABEL_COLUMN)
        page.columnconfigure(1, weight=1)
        title = ttk.Frame(page)
        title.grid(row=0, column=0, columnspan=3, sticky="w")
        ttk.Label(title, text="Mining", style="H2.TLabel").pack(side="left")
        ttk.Label(title, text="BETA", style="Beta.TLabel").pack(side="left", padx=8)
        ttk.Label(page, style="Muted.TLabel", wraplength=640, justify="left", text=(
            "Mines on the NVIDIA GPU when there is no compute work; compute tasks always come first. "
            "Earnings are the portal's estimates (the pool pays your wallet).")).grid(
            row=1, column=0, columnspan=3, sticky="w", pady=(2, 6))
        # The miner now: what it does and why, and its figures (two compact rows).
        live = ttk.Frame(page)
        live.grid(row=2, column=0, columnspan=3, sticky="we", pady=(0, 8))
        head = ttk.Frame(live)
        head.grid(row=0, column=0, columnspan=6, sticky="we")
        self.mining_status = ttk.Label(head, style="H2.TLabel")
        self.mining_status.pack(side="left")
        self.mining_retry = ttk.Button(head, text="Try again", command=self.controller.retry_mining)
        self.mining_reason = ttk.Label(live, style="Muted.TLabel", wraplength=700, justify="left")
        self.mining_reason.grid(row=1, column=0, columnspan=6, sticky="w", pady=(0, 2))
        self.mining_values = {}
        for i, label in enumerate(["Hashrate", "Shares", "GPU temperature", "Power", "Uptime", "Reports"]):
            row, col = 2 + i // 3, (i % 3) * 2
            ttk.Label(live, text=label, style="Field.TLabel").grid(row=row, column=col, sticky="nw", padx=(0, 8),
                                                                  pady=2)
            value = ttk.Label(live, text="—", style="Value.TLabel", wraplength=280 if i < 5 else 420,
                              justify="left")
            value.grid(row=row, column=col + 1, sticky="nw", padx=(0, 18), pady=2)
            self.mining_values[label] = value
        self.mining_notice = ttk.Label(live, style="Warn.TLabel", wraplength=700, justify="left")
        self.mining_notice.grid(row=4, column=0, columnspan=6, sticky="we", pady=(2, 0))

        self.mining_vars = {k: tk.StringVar() for k in ("pool", "coin", "wallet", "extra")}
        self.mining_entries = {}
        rows = [("pool", "Mining pool", "host:port, e.g. stratum+tcp://pool.example.com:4444"),
                ("coin", "Mining coin", "ticker, e.g. ETC"),
                ("wallet", "Wallet address", "where the pool pays"),
                ("extra", "Extra config", "miner options, one line")]
        for i, (key, label, hint) in enumerate(rows, start=3):
            ttk.Label(page, text=label, style="Field.TLabel").grid(row=i, column=0, sticky="w", pady=4,
                                                                  padx=(0, 18))
            entry = ttk.Entry(page, textvariable=self.mining_vars[key], width=44)
            entry.grid(row=i, column=1, sticky="we", pady=4)
            ttk.Label(page, text=hint, style="Muted.TLabel").grid(row=i, column=2, sticky="w", padx=(10, 0))
            self.mining_entries[key] = entry
        # Which program mines stays on this computer (worker.json): a portal never chooses what runs here.
        ttk.Label(page, text="Miner program", style="Field.TLabel").grid(row=7, column=0, sticky="w", pady=4,
                                                                        padx=(0, 18))
        program = ttk.Frame(page)
        program.grid(row=7, column=1, columnspan=2, sticky="we", pady=4)
        self.miner_kind = tk.StringVar()
        self.miner_path = tk.StringVar()
        self.miner_choice = ttk.Combobox(program, textvariable=self.miner_kind, state="readonly", width=16,
                                         values=MINER_CHOICES)
        self.miner_choice.pack(side="left")
        self.miner_entry = ttk.Entry(program, textvariable=self.miner_path, width=36)
        self.miner_entry.pack(side="left", padx=(8, 0), fill="x", expand=True)
        self.mining_entries["miner_path"] = self.miner_entry
        self.mining_enabled = tk.BooleanVar()
        self.mining_check = ttk.Checkbutton(page, text="Mine when there is no compute work",
                                            variable=self.mining_enabled)
        self.mining_check.grid(row=8, column=1, columnspan=2, sticky="w", pady=(4, 2))
        ttk.Label(page, text="Estimated earn", style="Field.TLabel").grid(row=9, column=0, sticky="w", pady=4)
        self.mining_estimate = ttk.Label(page, style="Value.TLabel", wraplength=420, justify="left")
        self.mining_estimate.grid(row=9, column=1, columnspan=2, sticky="w", pady=4)
        actions = ttk.Frame(page)
        actions.grid(row=10, column=1, columnspan=2, sticky="w", pady=(4, 0))
        self.mining_save = ttk.Button(actions, text="Save and sync", style="Accent.TButton",
                                      command=self._save_mining)
        self.mining_save.pack(side="left")
        self.mining_feedback = _Feedback(page)
        self.mining_feedback.grid(row=11, column=1, columnspan=2, sticky="w", pady=(4, 0))

        # The miner's last lines (bounded by the supervisor).
        self.mining_log = tk.Text(page, height=3, wrap="none", font=("TkFixedFont", 8), relief="flat",
                                  borderwidth=1, highlightthickness=1)
        self.mining_log.grid(row=12, column=0, columnspan=3, sticky="we", pady=(6, 0))
        self.mining_log.configure(state="disabled")

    def _section(self, row: int, text: str, pady=(14, 2)) -> None:
        frame = ttk.Frame(self.settings)
        frame.grid(row=row, column=0, columnspan=2, sticky="we", pady=pady)
        ttk.Label(frame, text=text, style="H2.TLabel").pack(side="left")
        ttk.Separator(frame).pack(side="left", fill="x", expand=True, padx=(10, 0), pady=(2, 0))

    def _field(self, row: int, text: str, **kwargs) -> None:
        ttk.Label(self.settings, text=text, style="Field.TLabel", **kwargs).grid(
            row=row, column=0, sticky="nw", pady=(5, 2), padx=(0, 16))

    def _line(self, row: int, pady=(2, 2)) -> ttk.Frame:
        frame = ttk.Frame(self.settings)
        frame.grid(row=row, column=1, sticky="we", pady=pady)
        return frame

    def _build_settings(self) -> None:
        page = self.settings
        page.columnconfigure(0, minsize=LABEL_COLUMN)
        page.columnconfigure(1, weight=1)
        self._section(0, "Pricing", pady=(0, 2))
        self._field(1, "Average Bid")
        line = self._line(1, pady=(4, 2))
        self.average_bid = ttk.Label(line, style="Value.TLabel")
        self.average_bid.pack(side="left")
        self.average_note = ttk.Label(line, style="Muted.TLabel")
        self.average_note.pack(side="left", padx=(8, 0))

        self._field(2, "Custom Bid", underline=7)
        line = self._line(2)
        self.bid_var = tk.StringVar()
        self.bid_entry = ttk.Entry(line, textvariable=self.bid_var, width=9, font="PictorMono")
        self.bid_entry.pack(side="left")
        ttk.Label(line, text="USD / hour", style="Muted.TLabel").pack(side="left", padx=(6, 12))
        ttk.Button(line, text="Save bid", style="Accent.TButton", command=self._save_bid).pack(side="left")
        ttk.Button(line, text="Use average", command=lambda: self.controller.set_bid(None)).pack(
            side="left", padx=(6, 0))
        self.bid_entry.bind("<Return>", lambda _e: self._save_bid())
        self.bid_var.trace_add("write", lambda *_a: self._preview_bid())
        self.bid_preview = _Feedback(page)
        self.bid_preview.grid(row=3, column=1, sticky="w")
        self.bid_feedback = _Feedback(page)
        self.bid_feedback.grid(row=4, column=1, sticky="w")

        self._field(5, "Your Bench Score")
        line = self._line(5, pady=(4, 2))
        self.bench_score = ttk.Label(line, style="Big.TLabel")
        self.bench_score.pack(side="left")
        self.bench_button = ttk.Button(line, text="Run benchmark", command=self.controller.run_benchmark)
        self.bench_button.pack(side="left", padx=(14, 10))
        self.bench_bar = ttk.Progressbar(line, style="Bench.Horizontal.TProgressbar", mode="indeterminate",
                                         length=140)
        self.bench_status = ttk.Label(page, style="Muted.TLabel", wraplength=540, justify="left")
        self.bench_status.grid(row=6, column=1, sticky="w")

        self._field(7, "Estimated Earning")
        self.earning = ttk.Label(page, style="Big.TLabel")
        self.earning.grid(row=7, column=1, sticky="w", pady=(4, 0))
        self.earning_explanation = ttk.Label(page, style="Muted.TLabel", wraplength=540, justify="left")
        self.earning_explanation.grid(row=8, column=1, sticky="w")

        self._section(9, "Payout")
        self._field(10, "Wallet address")
        line = self._line(10)
        self.wallet_var = tk.StringVar()
        self.wallet_entry = ttk.Entry(line, textvariable=self.wallet_var, width=44)
        self.wallet_entry.pack(side="left")
        ttk.Button(line, text="Save", command=self._save_wallet).pack(side="left", padx=(8, 0))
        self.wallet_entry.bind("<Return>", lambda _e: self._save_wallet())
        self.wallet_feedback = _Feedback(page)
        self.wallet_feedback.grid(row=11, column=1, sticky="w")

        self._section(12, "Renderers")
        self._field(13, "Blender")
        self.blender_found = ttk.Label(page, wraplength=540, justify="left")
        self.blender_found.grid(row=13, column=1, sticky="w", pady=(5, 2))
        line = self._line(14)
        self.blender_var = tk.StringVar(value=self.controller.cfg.settings.get("blender_path") or "")
        ttk.Entry(line, textvariable=self.blender_var, width=36).pack(side="left")
        ttk.Button(line, text="Browse…", command=self._browse_blender).pack(side="left", padx=(8, 0))
        ttk.Button(line, text="Apply", command=self._apply_blender).pack(side="left", padx=(6, 0))
        self.renderer_feedback = _Feedback(page)
        self.renderer_feedback.grid(row=15, column=1, sticky="w")
        self._field(16, "Real-ESRGAN")
        self.esrgan_found = ttk.Label(page)
        self.esrgan_found.grid(row=16, column=1, sticky="w", pady=(5, 2))

        self._section(17, "This computer")
        self.autostart_var = tk.BooleanVar(value=self.vm.autostart)
        self.autostart_check = ttk.Checkbutton(
            page, text="Start Pictor Worker when I sign in", variable=self.autostart_var,
            command=lambda: self.controller.set_autostart(self.autostart_var.get()))
        self.autostart_check.grid(row=18, column=0, columnspan=2, sticky="w", pady=2)
        idle_row = ttk.Frame(page)
        idle_row.grid(row=19, column=0, columnspan=2, sticky="w", pady=2)
        self.idle_var = tk.BooleanVar(value=bool(self.vm.prefs.get("idle_only")))
        self.idle_minutes = tk.StringVar(value=str(self.vm.prefs.get("idle_minutes", 5)))
        self.idle_check = ttk.Checkbutton(idle_row, text="Work only after", variable=self.idle_var,
                                          command=self._apply_idle)
        self.idle_check.pack(side="left")
        self.idle_spin = ttk.Spinbox(idle_row, from_=1, to=240, width=4, textvariable=self.idle_minutes,
                                     command=self._apply_idle)
        self.idle_spin.pack(side="left", padx=6)
        self.idle_spin.bind("<Return>", lambda _e: self._apply_idle())
        self.idle_spin.bind("<FocusOut>", lambda _e: self._apply_idle() if self.idle_var.get() else None)
        ttk.Label(idle_row, text="minutes without keyboard or mouse input (run only when idle)").pack(
            side="left")
        self.system_feedback = _Feedback(page)
        self.system_feedback.grid(row=20, column=0, columnspan=2, sticky="w")

        self._section(21, "Devices")
        ttk.Label(page, style="Muted.TLabel", wraplength=560, justify="left", text=(
            "The devices this worker shares, one task at a time on each. The CPU is off by default beside "
            "GPUs: it feeds them.")).grid(row=22, column=0, columnspan=2, sticky="w")
        self.devices_box = ttk.Frame(page)
        self.devices_box.grid(row=23, column=0, columnspan=2, sticky="w", pady=(4, 2))
        self.device_vars: dict[str, tk.BooleanVar] = {}
        self._device_ids: tuple[str, ...] = ()
        ttk.Button(page, text="Apply", command=self._apply_devices).grid(row=24, column=0, sticky="w", pady=2)
        self.devices_feedback = _Feedback(page)
        self.devices_feedback.grid(row=25, column=0, columnspan=2, sticky="w")

    def _build_footer(self) -> None:
        footer = ttk.Frame(self.frame, style="Window.TFrame", padding=(16, 6, 16, 8))
        footer.pack(fill="x", side="bottom")
        self.session = ttk.Label(footer, style="Footer.TLabel")
        self.session.pack(side="left")
        self.banner = ttk.Label(footer, style="Banner.TLabel")

    # --- actions --------------------------------------------------------------------------------

    def focus_bid(self) -> None:
        self.notebook.select(self.settings_tab)
        self.settings_tab.canvas.yview_moveto(0)
        self.bid_entry.focus_set()
        self.bid_entry.select_range(0, "end")
        self.bid_entry.icursor("end")

    def _save_bid(self) -> None:
        self.controller.set_bid(self.bid_var.get())

    def _preview_bid(self) -> None:
        self.bid_preview.show(self.vm.bid_preview(self.bid_var.get()))

    def _save_wallet(self) -> None:
        self.controller.save_wallet(self.wallet_var.get())

    def _save_mining(self) -> None:
        v = self.mining_vars
        self.controller.save_mining(v["pool"].get(), v["coin"].get(), v["wallet"].get(), v["extra"].get(),
                                    self.mining_enabled.get(), miner=self.miner_kind.get(),
                                    miner_path=self.miner_path.get())

    def _browse_blender(self) -> None:
        path = filedialog.askopenfilename(parent=self.root, title="Choose the Blender program")
        if path:
            self.blender_var.set(path)
            self._apply_blender()

    def _apply_blender(self) -> None:
        self.controller.set_blender_path(self.blender_var.get())

    def _apply_devices(self) -> None:
        self.controller.set_devices([slot for slot, var in self.device_vars.items() if var.get()])

    def _apply_idle(self) -> None:
        error = self.controller.set_idle_only(self.idle_var.get(), self.idle_minutes.get())
        if error:
            self.idle_var.set(bool(self.vm.prefs.get("idle_only")))

    def _pair_again(self) -> None:
        if self.on_pair_again is not None:
            self.on_pair_again()

    def flash(self, text: str, ms: int = 8000) -> None:
        """A short message in the footer (a finished task), for desktops without notifications."""
        self.banner.configure(text=text)
        self.banner.pack(side="right")
        if self._banner_after is not None:
            self.root.after_cancel(self._banner_after)
        self._banner_after = self.root.after(ms, self._hide_banner)

    def _hide_banner(self) -> None:
        self._banner_after = None
        self.banner.pack_forget()

    # --- rendering ------------------------------------------------------------------------------

    def render(self, force: bool = False) -> None:
        """Show the view model; cheap when nothing changed (the clock still moves Duration and ETA)."""
        vm = self.vm
        if vm.form_version != self._form_version:
            self._form_version = vm.form_version
            self._fill_forms()
        state = vm.state
        if state != self._header_state:
            self._header_state = state
            tint = colour(state)
            for widget in (self.header, self.header_texts, self.header_kicker, self.header_title, self.badge):
                widget.configure(background=tint)
            self.status_strip.configure(background=tint)
            image = self._images.get(state)
            if image is None:
                image = self._images[state] = ImageTk.PhotoImage(header_badge(state))
            self.badge.configure(image=image)
        title, hint = vm.headline()
        self._set(self.header_kicker, f"PICTOR WORKER · {vm.worker_label}" if vm.worker_label else "PICTOR WORKER")
        self._set(self.header_title, f"{STATE_TITLES.get(state, state)} · {vm.progress:.0%}" if vm.busy
                  else title)
        self._set(self.pause_button, "Resume" if vm.paused else "Pause")
        self.pause_button.state(["disabled"] if vm.stopping else ["!disabled"])

        # Computing
        self._set(self.status_title, title)
        self._set(self.status_hint, hint)
        if getattr(vm, "needs_pairing", False) and self.on_pair_again is not None:
            self.pair_again_button.pack(side="right", anchor="n")
        else:
            self.pair_again_button.pack_forget()
        for label, value in vm.computing_rows():
            self._set(self.computing_values[label], value)
        self._render_slots()
        self._set(self.about_values["Portal"], vm.server_url or "—")
        self._set(self.about_values["Worker ID"], str(vm.worker_id) if vm.worker_id is not None else "—")
        target = vm.progress * 1000
        if abs(float(self.progress["value"]) - target) > 0.5:
            self.progress["value"] = target
        self._set(self.progress_text, vm.progress_text())
        self._set(self.session, vm.session_text())

        if vm.version == self._rendered_version and not force:
            return
        self._rendered_version = vm.version
        self._render_mining()
        self._render_settings()
        self._render_devices()

    def _render_slots(self) -> None:
        """The Devices table of the Computing tab: rebuilt when the slots change, else only its texts."""
        rows = self.vm.slot_rows()
        ids = tuple(row[0] for row in rows)
        if ids != self._slot_ids:
            self._slot_ids = ids
            for child in self.devices_table.winfo_children():
                child.destroy()
            self._slot_cells = []
            if not rows:
                self.devices_title.grid_remove()
                self.devices_table.grid_remove()
                return
            self.devices_title.grid(row=5, column=0, sticky="w", pady=(18, 6))
            self.devices_table.grid(row=6, column=0, sticky="we")
            for col, head in enumerate(("Device", "State", "Task", "Progress")):
                ttk.Label(self.devices_table, text=head, style="Field.TLabel").grid(
                    row=0, column=col, sticky="w", padx=(0, 18), pady=(0, 4))
            for r in range(len(rows)):
                cells = [ttk.Label(self.devices_table, style="Value.TLabel") for _ in range(4)]
                for col, cell in enumerate(cells):
                    cell.grid(row=r + 1, column=col, sticky="w", padx=(0, 18), pady=2)
                self._slot_cells.append(cells)
        for cells, row in zip(self._slot_cells, rows):
            for cell, value in zip(cells, row):
                self._set(cell, value)

    def _render_devices(self) -> None:
        """The Settings tab's device choices: one box per device found, ticked when shared."""
        choices = self.vm.device_choices(self.controller.cfg.settings.get("devices"))
        ids = tuple(choice[0] for choice in choices)
        if ids != self._device_ids:
            self._device_ids = ids
            for child in self.devices_box.winfo_children():
                child.destroy()
            self.device_vars = {}
            for slot, label, shared in choices:
                var = self.device_vars[slot] = tk.BooleanVar(value=shared)
                ttk.Checkbutton(self.devices_box, text=label, variable=var).pack(anchor="w", pady=1)
        self.devices_feedback.show(self.vm.feedback.get("devices") or (
            "busy", "Changes apply at the next start." if choices else "Looking for devices…"))

    def _render_mining(self) -> None:
        vm = self.vm
        available, reason = vm.mining_availability()
        self._set(self.mining_notice, reason)
        self.mining_notice.configure(style="Muted.TLabel" if available else "Warn.TLabel")
        flag = ["!disabled"] if available else ["disabled"]
        for entry in self.mining_entries.values():
            entry.state(flag)
        self.mining_check.state(flag)
        self.miner_choice.state(["readonly", *flag])
        self.mining_save.state(flag if "mining" not in vm.feedback or vm.feedback["mining"][0] != "busy"
                               else ["disabled"])
        self._set(self.mining_estimate, vm.mining_estimate_text())
        self.mining_feedback.show(vm.feedback.get("mining"))
        title, reason, rows = vm.mining_live()
        self._set(self.mining_status, title)
        self._set(self.mining_reason, reason)
        for label, value in rows:
            self._set(self.mining_values[label], value)
        stopped = vm.mining_state is not None and vm.mining_state.status == "stopped"
        if stopped and not self.mining_retry.winfo_ismapped():
            self.mining_retry.pack(side="left", padx=12)
        elif not stopped and self.mining_retry.winfo_ismapped():
            self.mining_retry.pack_forget()
        text = vm.mining_log_text()
        if self.mining_log.get("1.0", "end-1c") != text:
            self.mining_log.configure(state="normal")
            self.mining_log.delete("1.0", "end")
            self.mining_log.insert("1.0", text)
            self.mining_log.see("end")
            self.mining_log.configure(state="disabled")

    def _render_settings(self) -> None:
        vm = self.vm
        average = vm.settings.get("average_bid")
        self._set(self.average_bid, f"{usd(average)} / hour" if average else "—")
        self._set(self.average_note, "mean bid of the workers seen in the last 24 h" if average
                  else ("not loaded yet" if vm.settings_error else "loading from the portal…"))
        self._preview_bid()
        self.bid_feedback.show(vm.feedback.get("bid"))
        score, status = vm.bench_text()
        self._set(self.bench_score, score)
        self._set(self.bench_status, status)
        if vm.bench_running:
            self.bench_button.state(["disabled"])
            if not self.bench_bar.winfo_ismapped():
                self.bench_bar.pack(side="left")
                self.bench_bar.start(15)
        else:
            self.bench_button.state(["!disabled"] if not vm.stopping else ["disabled"])
            if self.bench_bar.winfo_ismapped():
                self.bench_bar.stop()
                self.bench_bar.pack_forget()
        amount, explanation = vm.earning_text()
        self._set(self.earning, amount)
        self._set(self.earning_explanation, explanation)
        self.wallet_feedback.show(vm.feedback.get("wallet"))
        (blender_label, blender), (_, esrgan) = vm.renderer_rows()
        self._set(self.blender_found, blender)
        self._set(self.esrgan_found, esrgan)
        self.renderer_feedback.show(vm.feedback.get("renderer")
                                    or ("busy", "Choose blender(.exe) to use another Blender; leave empty to "
                                                "find it automatically."))
        if self.autostart_var.get() != vm.autostart:
            self.autostart_var.set(vm.autostart)
        self.autostart_check.state(["!disabled"] if vm.autostart_available else ["disabled"])
        if not vm.idle_available:
            self.idle_check.state(["disabled"])
            self.idle_spin.state(["disabled"])
        feedback = vm.feedback.get("system")
        if feedback is None and not vm.idle_available:
            feedback = ("busy", f"Work only when idle is unavailable: {vm.idle_reason}")
        if feedback is None and not vm.autostart_available:
            feedback = ("busy", vm.autostart_reason)
        self.system_feedback.show(feedback)

    def _fill_forms(self) -> None:
        """Put the portal's values into the entries (first load, and after a save)."""
        vm = self.vm
        custom = vm.custom_bid
        self.bid_var.set(_plain(custom) if custom is not None else "")
        self.wallet_var.set(vm.wallet_address or "")
        config = vm.mining_config
        for key, var in self.mining_vars.items():
            var.set(config.get(key) or "")
        self.mining_enabled.set(bool(config.get("enabled")))
        kind, path = self.controller.mining_program()
        self.miner_kind.set(kind)
        self.miner_path.set(path)

    @staticmethod
    def _set(widget, text: str) -> None:
        if widget.cget("text") != text:
            widget.configure(text=text)


def _plain(value: str) -> str:
    """'0.420000' -> '0.42' for the bid entry."""
    amount = money(value)
    if amount is None:
        return ""
    text = f"{amount.normalize():f}"
    return text if "." not in text or len(text.split(".")[1]) >= 2 else f"{amount:.2f}"
