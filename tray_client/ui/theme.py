"""The desktop window's look in one place: the Sun Valley ttk theme (sv-ttk, Windows 11 style) under the
app's own styles (window.apply_style), sizes that follow the screen's scaling, and wrapped text that
follows the window's width as it is resized."""

from __future__ import annotations

import logging
import sys
import tkinter as tk
from tkinter import font as tkfont, ttk

log = logging.getLogger(__name__)

BASE_SCALING = 96 / 72  # Tk's `tk scaling` (pixels per point) at 100% on Windows, and on Xvfb
FALLBACK_THEME = "clam"
MIN_WRAP = 160  # pixels: narrower than this, text would wrap a word a line
WRAP_MARGIN = 44  # pixels (at 100%) kept free right of wrapped text: the page's padding and scrollbar
SCREEN_SHARE = 0.92  # a window never opens larger than this share of the screen


def enable_dpi_awareness() -> None:
    """On Windows, before Tk starts: draw at the screen's real resolution (Tk then reports 150% as
    `tk scaling` 2.0 and point-sized fonts grow), instead of being bitmap-stretched and blurred."""
    if sys.platform != "win32":
        return
    import ctypes
    try:
        ctypes.windll.shcore.SetProcessDpiAwareness(1)  # per-monitor aware from Windows 8.1 on
    except (AttributeError, OSError):
        try:
            ctypes.windll.user32.SetProcessDPIAware()
        except (AttributeError, OSError):
            pass


def scale(widget: tk.Misc) -> float:
    """The screen's scaling as a factor: 1.0 at 100%, 1.5 at 150%."""
    try:
        # Tk stores the scaling as a pixel size: 150% reads back as 1.5008; two decimals undo that.
        return max(1.0, round(float(widget.tk.call("tk", "scaling")) / BASE_SCALING, 2))
    except (tk.TclError, ValueError):
        return 1.0


def px(widget: tk.Misc, pixels: float) -> int:
    """A size designed in pixels at 100%, for this screen's scaling."""
    return round(pixels * scale(widget))


def scaled_geometry(root: tk.Misc, size: str) -> str:
    """'800x720' designed at 100% -> the same window at this scaling, never beyond the screen."""
    width, height = (int(n) for n in size.split("x"))
    factor = scale(root)
    width = min(round(width * factor), int(root.winfo_screenwidth() * SCREEN_SHARE))
    height = min(round(height * factor), int(root.winfo_screenheight() * SCREEN_SHARE))
    return f"{width}x{height}"


def set_min_size(root: tk.Misc, width: int, height: int) -> None:
    """minsize() for a size designed at 100%, capped by the screen like scaled_geometry."""
    w, h = (int(n) for n in scaled_geometry(root, f"{width}x{height}").split("x"))
    root.minsize(w, h)


def apply_theme(root: tk.Tk) -> ttk.Style:
    """Sun Valley light under the app's own styles; 'clam' where sv-ttk is missing or cannot load."""
    from .window import apply_style
    base = FALLBACK_THEME
    try:
        import sv_ttk
        sv_ttk.set_theme("light", root)
        base = ttk.Style(root).theme_use()
        _point_sized_fonts(root)
    except (ImportError, tk.TclError, RuntimeError, TypeError) as exc:
        log.info("the Sun Valley theme is not available (%s): using %s", exc, FALLBACK_THEME)
    style = apply_style(root, base=base)
    if base != FALLBACK_THEME:
        _flat_progressbars(style)
    follow_width(root)
    # ttk applies a theme change when idle: widgets made before that would keep the base theme's
    # colours instead of the app's styles (labels on grey in the pairing form), so apply it now.
    root.update_idletasks()
    return style


def _flat_progressbars(style: ttk.Style) -> None:
    """The app's progress bars stay flat bars of their own colour (clam's elements, borrowed): Sun
    Valley draws bars from images in its accent colour, which the styles' colours cannot change."""
    for element in ("trough", "pbar"):
        name = f"Flat.Horizontal.Progressbar.{element}"
        if name not in style.element_names():
            style.element_create(name, "from", FALLBACK_THEME, element)
    layout = [("Flat.Horizontal.Progressbar.trough", {"sticky": "nswe", "children": [
        ("Flat.Horizontal.Progressbar.pbar", {"side": "left", "sticky": "ns"})]})]
    for name in ("Pictor.Horizontal.TProgressbar", "Bench.Horizontal.TProgressbar"):
        style.layout(name, layout)


def _point_sized_fonts(root: tk.Misc) -> None:
    """sv-ttk sizes its fonts in pixels (-14), which stay small at 150%; points follow `tk scaling`.
    Its Segoe UI Variable exists on Windows 11 only: elsewhere the default family is used."""
    families = {f.lower() for f in tkfont.families(root)}
    default_family = tkfont.nametofont("TkDefaultFont", root).actual("family")
    for name in tkfont.names(root):
        if not name.startswith("SunValley"):
            continue
        font = tkfont.nametofont(name, root)
        size = int(font.cget("size"))
        options = {"size": max(8, round(abs(size) * 0.75)) if size < 0 else size}
        if font.cget("family").lower() not in families:
            options["family"] = default_family
        font.configure(**options)


def follow_width(root: tk.Misc) -> None:
    """Rewrap every wrapped label (wraplength > 0) to the room it has whenever the window's size or
    tab changes, so a wider window shows longer lines and a narrower one never clips text."""
    state = {"after": None, "width": None}

    def rewrap() -> None:
        state["after"] = None
        try:
            right = root.winfo_rootx() + root.winfo_width() - px(root, WRAP_MARGIN)
            for widget in _descendants(root):
                if not widget.winfo_ismapped():
                    continue
                try:
                    wrap = int(str(widget.cget("wraplength")) or 0)
                except (tk.TclError, ValueError):
                    continue
                if wrap <= 0:
                    continue
                room = max(px(root, MIN_WRAP), right - widget.winfo_rootx())
                if abs(room - wrap) > 4:  # small moves would only make the layout jitter
                    widget.configure(wraplength=room)
        except tk.TclError:  # the window is closing
            pass

    def later(_event=None) -> None:
        if state["after"] is None:
            state["after"] = root.after(60, rewrap)

    def on_configure(event) -> None:
        if event.widget is root and event.width != state["width"]:
            state["width"] = event.width
            later()

    root.bind("<Configure>", on_configure, add="+")
    root.bind_all("<<NotebookTabChanged>>", later, add="+")
    root.bind("<Map>", later, add="+")


def _descendants(widget: tk.Misc):
    for child in widget.winfo_children():
        yield child
        yield from _descendants(child)
