"""The HTML report's plots, drawn with matplotlib into inline SVG strings.

Nothing is fetched when the report is viewed: each plot is an ``<svg>``
element to paste into the page, its text kept as text (``svg.fonttype:
none``: small, searchable, drawn in the viewer's own sans-serif font).
The output is deterministic — the same data gives the same bytes — through a
fixed ``svg.hashsalt`` per plot (which also keeps element ids unique between
the plots of one page) and no date in the metadata.

matplotlib is imported when a plot is drawn, never when the CLI starts.
Figures are made with :class:`matplotlib.figure.Figure`, not pyplot: no
global figure registry and no GUI backend (the SVG canvas draws them).
"""

from __future__ import annotations

import io
import math
import re
from typing import TYPE_CHECKING, Any, Sequence

from llmops_cli.gate.comparison import MetricComparison
from llmops_cli.report.text import fmt, fmt_ci

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

BASELINE_COLOR, CANDIDATE_COLOR = "#8c96a8", "#2f6fdb"
BAD_COLOR, GOOD_COLOR, ZERO_COLOR = "#d23c3c", "#2e9e5b", "#555555"
_RC: dict[RcKeyType, Any] = {"svg.fonttype": "none", "font.size": 8.5, "font.family": "sans-serif", "axes.spines.top": False,
       "axes.spines.right": False, "axes.titlesize": 9, "axes.titleweight": "bold", "axes.labelsize": 8.5,
       "legend.fontsize": 8, "legend.frameon": False, "path.simplify": True, "svg.image_inline": True,
       "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"], "text.parse_math": False}
_FAILED = ("regressed", "below min", "above max", "unproven")


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def _svg(fig, name: str) -> str:
    """``fig`` as an ``<svg>`` element: no XML prolog, doctype or metadata;
    ids salted with ``name`` (unique within one page)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": f"llmops-{name}", "svg.id": f"plot-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    used = set(re.findall(r"#([\w.-]+)", text))  # ids a clip path or marker refers to; the others would repeat between plots
    text = re.sub(r' id="([\w.-]+)"', lambda m: m.group(0) if m.group(1) in used or m.group(1) == f"plot-{name}" else "", text)
    text = re.sub(r'( (?:d|x|y|transform)=")([^"]*)"',  # coordinates to 1/100 pt: a third smaller, the same picture
                  lambda m: m.group(1) + re.sub(r"(\d\.\d\d)\d+", r"\1", m.group(2)) + '"', text)
    return re.sub(r"\s*\n\s*", " ", text).strip()  # SVG collapses white space anyway


def _rc():
    import matplotlib

    return matplotlib.rc_context(_RC)


def forest_plot(metrics: Sequence[MetricComparison]) -> str | None:
    """Each metric's delta (candidate − baseline, in its own units) with the
    interval the verdict used, one row per metric, against its rule's line:
    ``−max_drop`` for a score, ``+max_increase`` for a lower-is-better
    metric (the worse side shaded). Rows in the same units (0–1 scores,
    BLEU's 0–100, seconds, ...) share one x range, so their intervals compare
    at a glance. None when no metric has a delta."""
    rows = [m for m in metrics if m.delta is not None]
    if not rows:
        return None
    ranges: dict[tuple[float, str], tuple[float, float]] = {}
    for m in rows:
        lo, hi = min(_extent(m)), max(_extent(m))
        old = ranges.get((m.scale, m.unit), (lo, hi))
        ranges[(m.scale, m.unit)] = (min(old[0], lo), max(old[1], hi))
    with _rc():
        fig = _figure(9.0, 0.3 + 0.72 * len(rows))
        axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
        for ax, m in zip(axes, rows):
            _forest_row(ax, m, *ranges[(m.scale, m.unit)])
        axes[-1].set_xlabel("candidate − baseline (each metric in its own units; shaded: beyond the rule)")
        return _svg(fig, "forest")


def _rule_line(m: MetricComparison) -> float | None:
    return None if m.max_drop is None else (-m.max_drop if m.higher_is_better else m.max_drop)


def _extent(m: MetricComparison) -> list[float]:
    """What a row must show: 0, the delta, its interval and the rule's line."""
    line = _rule_line(m)
    assert m.delta is not None  # forest_plot draws only rows with a delta
    return [0.0, m.delta] + ([m.ci_low, m.ci_high] if m.ci_low is not None and m.ci_high is not None else []) + ([line] if line is not None else [])


def _forest_row(ax, m: MetricComparison, low: float, high: float) -> None:
    assert m.delta is not None  # forest_plot draws only rows with a delta
    lo, hi = (m.ci_low, m.ci_high) if m.ci_low is not None and m.ci_high is not None else (m.delta, m.delta)
    line = _rule_line(m)
    span = (high - low) or (m.scale * 0.01 if not m.unit else abs(m.delta) or 1.0)
    left, right = low - 0.08 * span, high + 0.08 * span
    ax.set_xlim(left, right)
    ax.set_ylim(-1, 1)
    if line is not None:
        bad = (left, line) if m.higher_is_better else (line, right)
        ax.axvspan(*bad, color=BAD_COLOR, alpha=0.08, lw=0)
        ax.axvline(line, color=BAD_COLOR, ls="--", lw=1)
    ax.axvline(0, color=ZERO_COLOR, lw=0.8)
    color = BAD_COLOR if m.verdict in _FAILED else GOOD_COLOR if m.verdict == "improved" else CANDIDATE_COLOR
    ax.errorbar([m.delta], [0], xerr=[[m.delta - lo], [hi - m.delta]], fmt="o", color=color, ms=5, capsize=3, lw=1.6)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_ylabel(m.label, rotation=0, ha="right", va="center")
    rule = "" if line is None else f" · rule {fmt(line, m.scale, True, m.unit)}"
    ax.set_title(f"{fmt(m.delta, m.scale, True, m.unit)} {fmt_ci(m) if m.ci_low is not None else ''}{rule} · {m.verdict}",
                 loc="right", fontsize=8, fontweight="normal", color=color, pad=2)


def distribution_plot(metric: str, candidate: Sequence[float], baseline: Sequence[float] | None = None, *,
                      scale: float = 1.0, unit: str = "") -> str | None:
    """Histogram of one metric's per-case scores (0–``scale``, or in
    ``unit`` for measured quantities), the candidate's beside the
    baseline's. Unscored cases are left out by the caller (never drawn as
    0). None when there is nothing to draw."""
    values = [v for v in candidate if v is not None and math.isfinite(v)]
    base = [v for v in (baseline or []) if v is not None and math.isfinite(v)]
    if not values and not base:
        return None
    import numpy as np

    if unit:
        edges = np.histogram_bin_edges(np.asarray(values + base, dtype=float), bins=min(20, max(5, len(values) // 10)))
    else:
        edges = np.linspace(0.0, scale, 11)
    with _rc():
        fig = _figure(3.5, 2.2)
        ax = fig.subplots()
        data, labels, colors = [], [], []
        if baseline is not None:
            data.append(base)
            labels.append(f"baseline (n={len(base)})")
            colors.append(BASELINE_COLOR)
        data.append(values)
        labels.append(f"candidate (n={len(values)})")
        colors.append(CANDIDATE_COLOR)
        ax.hist(data, bins=edges, label=labels, color=colors, rwidth=0.9)
        ax.set_title(metric, loc="left")
        ax.set_xlabel(f"per-case {metric}" + (f" ({unit})" if unit else ""))
        ax.set_ylabel("cases")
        ax.legend(loc="best")
        return _svg(fig, f"dist-{re.sub(r'[^A-Za-z0-9_-]', '_', metric)}")


def latency_histogram(called: Sequence[float], cached: Sequence[float] = ()) -> str | None:
    """Histogram of the model calls' latencies in seconds, calls made this
    run stacked on cached answers (which keep the latency recorded when they
    were first answered). None without any latency."""
    if not called and not cached:
        return None
    import numpy as np

    everything = np.asarray(list(called) + list(cached), dtype=float)
    edges = np.histogram_bin_edges(everything, bins=min(30, max(5, len(everything) // 10)))
    with _rc():
        fig = _figure(7.2, 2.2)
        ax = fig.subplots()
        ax.hist([list(called), list(cached)], bins=edges, stacked=True, color=[CANDIDATE_COLOR, BASELINE_COLOR],
                label=[f"called this run (n={len(called)})", f"cached (n={len(cached)})"])
        ax.set_xlabel("latency per call (s)")
        ax.set_ylabel("calls")
        ax.legend(loc="best")
        return _svg(fig, "latency")
