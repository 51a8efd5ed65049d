"""The Statistics tab's charts: matplotlib Figures (never pyplot) rendered to SVG bytes, cached per data version."""

import io
import threading
from collections import OrderedDict
from datetime import date

import matplotlib

matplotlib.use("Agg")  # no display, ever; harmless if already set

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from .services.stats import Series  # noqa: E402

CHARTS = {
    "earnings-by-task": "Earnings by Task",
    "compute-tasks": "Processed Compute Tasks",
    "earnings-by-mining": "Earnings by Mining",
}
# Account-wide charts (services/payouts.py, services/credit.py): not one of a worker's tabs.
ACCOUNT_CHARTS = {"spend": "Spend on Jobs"}
EMPTY = {
    "spend": "Nothing spent in this period",
    "earnings-by-task": "No completed tasks in this period",
    "compute-tasks": "No completed tasks in this period",
    "earnings-by-mining": "No mining earnings reported in this period",
}
COLOURS = {"primary": "#4f46e5", "completed": "#1b7f3b", "failed": "#c62828", "mining": "#b7791f",
           "text": "#1c2033", "muted": "#61677d", "grid": "#e2e5ee"}
CACHE_SIZE = 512

# matplotlib keeps module-level state (font cache, rcParams, the text layout engine) that is not
# thread-safe: one render at a time, each with its own Figure.
_render_lock = threading.Lock()
_cache: "OrderedDict[tuple, bytes]" = OrderedDict()
_cache_lock = threading.Lock()
_RC = {"svg.fonttype": "none", "svg.hashsalt": "pictor", "font.size": 10,
       "font.family": ["DejaVu Sans"], "axes.edgecolor": COLOURS["grid"]}


def _tick_label(day: date, unit: str, span_days: int) -> str:
    if unit == "month":
        return day.strftime("%b %Y") if day.month == 1 or span_days > 400 else day.strftime("%b")
    if span_days <= 7:
        return day.strftime("%a %d")
    return day.strftime("%b %d")


def _usd(value, _pos=None) -> str:
    if abs(value) >= 1000:
        return f"${value / 1000:,.1f}k"
    if 0 < abs(value) < 0.1:  # small rewards: "$0.0025", not "$0.00"
        return f"${value:,.4f}".rstrip("0").rstrip(".") if abs(value) >= 0.0001 else f"${value:,.6f}"
    return f"${value:,.2f}" if abs(value) < 100 else f"${value:,.0f}"


SIZES = {"wide": (7.2, 3.0), "compact": (4.2, 3.2)}  # compact: phones, where a wide chart's text would be tiny


def _draw(series: Series, chart: str, size: str = "wide") -> Figure:
    compact = size == "compact"
    fig = Figure(figsize=SIZES[size], dpi=100, layout="constrained")
    ax = fig.add_subplot()
    buckets = series.buckets
    xs = list(range(len(buckets)))
    span = (series.end - series.start).days + 1
    unit_word = "month" if series.unit == "month" else "day"
    ax.set_title(CHARTS.get(chart) or ACCOUNT_CHARTS[chart], loc="left", fontsize=11 if compact else 12, fontweight="bold", color=COLOURS["text"])
    ax.set_xlabel(f"Date ({series.zone}, per {unit_word})", color=COLOURS["muted"])

    if chart == "spend":
        values = [b.task_earnings_micros / 1_000_000 for b in buckets]
        ax.bar(xs, values, color=COLOURS["primary"], width=0.7, label="Spend")
        ax.set_ylabel("Spend (USD)", color=COLOURS["muted"])
        ax.yaxis.set_major_formatter(FuncFormatter(_usd))
        empty = not any(b.task_earnings_micros for b in buckets)
    elif chart == "earnings-by-task":
        values = [b.task_earnings_micros / 1_000_000 for b in buckets]
        ax.bar(xs, values, color=COLOURS["primary"], width=0.7, label="Task earnings")
        ax.set_ylabel("Earnings (USD)", color=COLOURS["muted"])
        ax.yaxis.set_major_formatter(FuncFormatter(_usd))
        empty = not any(b.task_earnings_micros for b in buckets)
    elif chart == "earnings-by-mining":
        values = [b.mining_earnings_micros / 1_000_000 for b in buckets]
        ax.bar(xs, values, color=COLOURS["mining"], width=0.7, label="Mining earnings (estimated)")
        ax.set_ylabel("Estimated earnings (USD)", color=COLOURS["muted"])
        ax.yaxis.set_major_formatter(FuncFormatter(_usd))
        empty = not any(b.mining_earnings_micros for b in buckets)
    else:
        completed = [b.tasks_completed for b in buckets]
        failed = [b.tasks_failed for b in buckets]
        ax.bar(xs, completed, color=COLOURS["completed"], width=0.7, label="Completed")
        ax.bar(xs, failed, bottom=completed, color=COLOURS["failed"], width=0.7, label="Failed")
        ax.set_ylabel("Tasks (count)", color=COLOURS["muted"])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        values = [c + f for c, f in zip(completed, failed)]
        empty = not any(values)
        if not empty and compact:
            # No room beside the title on a phone: inside the plot, above the bars (headroom below).
            ax.legend(loc="upper left", frameon=False, fontsize=8, ncols=2, handlelength=1.0, borderaxespad=0.2)
        elif not empty:
            # Above the plot, beside the title: never on top of a bar.
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9, ncols=2,
                      borderaxespad=0.1)

    if empty:
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.text(0.5, 0.5, EMPTY[chart], transform=ax.transAxes, ha="center", va="center",
                fontsize=11, color=COLOURS["muted"])
    else:
        headroom = 1.35 if compact and chart == "compute-tasks" else 1.12
        ax.set_ylim(0, max(values) * headroom)
    # At most ~8 (phones: 4) readable date ticks, whatever the number of buckets.
    step = max(1, -(-len(buckets) // (4 if compact else 8)))
    ticks = xs[::step]
    ax.set_xticks(ticks, [_tick_label(buckets[i].start, series.unit, span) for i in ticks])
    ax.set_xlim(-0.6, max(len(buckets), 1) - 0.4)
    ax.tick_params(colors=COLOURS["muted"], labelsize=9)
    ax.grid(axis="y", color=COLOURS["grid"], linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def render_svg(series: Series, chart: str, size: str = "wide") -> bytes:
    """Draw one chart to SVG bytes (uncached)."""
    if (chart not in CHARTS and chart not in ACCOUNT_CHARTS) or size not in SIZES:
        raise KeyError(chart if chart not in CHARTS else size)
    with _render_lock, matplotlib.rc_context(_RC):
        fig = _draw(series, chart, size)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def chart_svg(series: Series, chart: str, size: str = "wide") -> tuple[bytes, str]:
    """(SVG bytes, ETag) for a chart, rendered once per (worker, chart, size, period, range, data version)."""
    key = (series.worker_id, chart, size, series.period, series.start, series.end, series.version)
    etag = f"{chart}-{size}-{series.worker_id}-{series.start:%Y%m%d}-{series.end:%Y%m%d}-{series.version}"
    with _cache_lock:
        svg = _cache.get(key)
        if svg is not None:
            _cache.move_to_end(key)
            return svg, etag
    svg = render_svg(series, chart, size)
    with _cache_lock:
        _cache[key] = svg
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return svg, etag


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
