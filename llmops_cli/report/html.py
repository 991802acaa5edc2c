"""The HTML report: one self-contained file that opens offline.

Rendered with Jinja2 (autoescaping on) from ``templates/report.html.j2``;
its style and script are inlined from ``templates/report.css`` and
``templates/report.js``, its plots are inline SVG (:mod:`.plots`), and the
per-case table's data is JSON in a ``<script type="application/json">``
element (:mod:`.case_table`) that the page's own script renders as text. A
Content-Security-Policy allows that one script (by its SHA-256) and no
other, no connection, no frame and no external resource: a hostile output
in the record shows as text and could not run even if it were markup.

Numbers are those of the terminal and the Markdown summary (the
:mod:`.text` helpers); the verdict and exit code, those of the gate
(:func:`llmops_cli.gate.outcome.from_comparison`).
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from typing import TYPE_CHECKING, Any

from llmops_cli.gate.comparison import Comparison
from llmops_cli.record.schema import RunRecord, Usage
from llmops_cli.report.case_table import case_table, script_json
from llmops_cli.report.text import fmt, fmt_ci, fmt_mde, fmt_p, gate_rule_text, metric_notes, sequential_lines, slice_cell, slice_tables

if TYPE_CHECKING:
    from llmops_cli.gate.outcome import Outcome

_TONE = {"passed": "good", "regressed": "bad", "incomplete": "warn", "bad input": "warn", "interrupted": "warn"}


def html_report(record: RunRecord, comparison: Comparison | None = None, *, baseline: RunRecord | None = None,
                outcome: Outcome | None = None, title: str | None = None) -> str:
    """The report of ``record`` as one HTML page (a ``str``; UTF-8 when written).

    Args:
        record: the run (candidate).
        comparison: the gate's comparison with the baseline; None shows the
            run alone (no verdict, no exit code).
        baseline: the baseline record, for the per-case table and the score
            distributions (without it they show the candidate alone).
        outcome: the run's :class:`~llmops_cli.gate.outcome.Outcome`, when the
            caller has it (its exit code and reason are shown); else derived
            from ``comparison`` (:func:`~llmops_cli.gate.outcome.from_comparison`:
            a record that did not complete is ``incomplete``, exit 3).
        title: the page title (default: the config's name).

    Imports matplotlib (for the plots) when called.
    """
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_templates())), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    script = _asset("report.js")
    ctx = _context(record, comparison, baseline, outcome)
    ctx.update(title=title or f"llmops report — {record.config.get('name') or record.config_path or record.run_id}",
               css=_asset("report.css"), script=script, script_hash=_sha256(script))
    return env.get_template("report.html.j2").render(ctx)


def _templates():
    return resources.files("llmops_cli.report") / "templates"


def _asset(name: str) -> str:
    return (_templates() / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    """The CSP source of an inline script: ``sha256-<base64 digest>``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _context(record: RunRecord, cmp: Comparison | None, baseline: RunRecord | None, outcome: Outcome | None) -> dict[str, Any]:
    from markupsafe import Markup

    from llmops_cli.gate.pairing import case_changes
    from llmops_cli.report import plots

    gated = [m.metric for m in cmp.metrics if m.max_drop is not None] if cmp is not None else []
    compared = [m.metric for m in cmp.metrics] if cmp is not None else []
    changes = case_changes(baseline, record, compared or list(record.metrics)) if baseline is not None else None
    table = case_table(record, baseline, changes, default_metric=next(iter(gated or compared), None))
    return {
        "run": _run_facts(record), "baseline": _run_facts(baseline) if baseline is not None else None,
        "commits": _commits(cmp), "verdict": _verdict(record, cmp, outcome),
        "cmp": cmp, "gate": _gate_rows(cmp) if cmp is not None else [],
        "rule_text": gate_rule_text(cmp) if cmp is not None else "",
        "notes": (sequential_lines(cmp) + metric_notes(cmp) + cmp.power_warnings) if cmp is not None else [],
        "slices": _slices(cmp, record),
        "summary": _metric_summary(record),
        "usage": _usage_rows(record.usage, baseline.usage if baseline is not None else None),
        "judge_usage": _usage_rows(record.judge_usage, baseline.judge_usage if baseline is not None else None)
        if record.judge_usage is not None else [],
        "slowest": record.usage.slowest,
        "forest": Markup(plots.forest_plot(cmp.metrics) or "") if cmp is not None else "",
        "distributions": [Markup(svg) for svg in _distributions(record, baseline, table)],
        "latency": Markup(_latency(record) or ""),
        "config_yaml": _yaml(record.config),
        "environment": record.environment, "served": record.served, "judge_served": record.judge_served,
        "compared": baseline is not None,
        "changed": {"total": len(changes or []), "worse": sum(c.delta < 0 for c in changes or []),
                    "better": sum(c.delta > 0 for c in changes or [])},
        "cases_json": Markup(script_json(table)),
    }


def _run_facts(r: RunRecord) -> dict[str, Any]:
    return {"run_id": r.run_id, "kind": r.kind, "created_at": r.created_at, "status": r.status, "cases": len(r.cases),
            "fingerprint": r.fingerprint, "dataset_hash": r.dataset_hash, "tool_version": r.tool_version,
            "source": r.source, "config_path": r.config_path, "model": r.config.get("model"),
            "shard": f"{r.shard.index}/{r.shard.count} of {r.shard.total} cases" if r.shard else None}


def _commits(cmp: Comparison | None) -> list[tuple[str, str]]:
    """``[("baseline", text), ("candidate", text)]`` from ``comparison.commits``
    when the comparison names the commits it ran (``--baseline-ref``)."""
    commits = getattr(cmp, "commits", None) or {}
    out = []
    for side in ("baseline", "candidate"):
        c = commits.get(side)
        if c:
            out.append((side, " · ".join(f"{k}: {v}" for k, v in c.items()) if isinstance(c, dict) else str(c)))
    return out


def _verdict(record: RunRecord, cmp: Comparison | None, outcome: Outcome | None) -> dict[str, Any] | None:
    from llmops_cli.gate.outcome import from_comparison

    if outcome is None and cmp is not None:
        outcome = from_comparison(cmp, record)
    if outcome is None:
        return None
    return {"status": outcome.status, "exit_code": outcome.exit_code, "reason": outcome.reason,
            "notes": outcome.notes, "tone": _TONE.get(outcome.status, "warn")}


def _gate_rows(cmp: Comparison) -> list[dict[str, Any]]:
    return [{"metric": m.metric, "baseline": fmt(m.baseline, m.scale, unit=m.unit),
             "candidate": fmt(m.candidate, m.scale, unit=m.unit), "delta": fmt(m.delta, m.scale, True, m.unit),
             "ci": fmt_ci(m), "p": fmt_p(m), "mde": fmt_mde(m), "rule": m.rule, "verdict": m.verdict, "n": m.n,
             "reason": m.reason if m.failed or m.verdict == "unscored" else ""} for m in cmp.metrics]


def _slices(cmp: Comparison | None, record: RunRecord) -> list[dict[str, Any]]:
    """Per slice field: columns and rows of text cells, from the comparison
    (candidate (delta ± half-width) verdict) or, for a run alone, the
    record's per-slice aggregates."""
    if cmp is not None:
        return [{"field": f, "metrics": metrics,
                 "rows": [(v, n, [(slice_cell(c), c.verdict) if c else ("—", "info") for c in cells]) for v, n, cells in rows]}
                for f, (metrics, rows) in slice_tables(cmp).items()]
    metrics = list(record.metrics)
    return [{"field": f, "metrics": metrics,
             "rows": [(v, e["n"], [(fmt(e.get(m), record.metrics[m].scale, unit=record.metrics[m].info.get("unit", "")),
                                    "info") for m in metrics]) for v, e in values.items()]}
            for f, values in record.slices.items()]


def _metric_summary(record: RunRecord) -> list[dict[str, Any]]:
    rows = []
    for name, m in record.metrics.items():
        agree = m.info.get("self_agreement")
        rows.append({"metric": name, "score": fmt(m.aggregate, m.scale, unit=m.info.get("unit", "")),
                     "scored": f"{m.n_scored}/{m.n_scored + m.n_unscored}", "unscored": m.n_unscored,
                     "agreement": "—" if agree is None else f"{agree:.2f} ({m.info.get('disagreement_rate', 0):.0%} "
                                                             "cases disagree)",
                     "reason": m.info.get("reason", "")})
    return rows


def _usage_rows(u: Usage, b: Usage | None) -> list[tuple[str, str, str | None]]:
    """``(label, candidate, baseline or None)`` text rows of the run statistics."""
    def cells(x: Usage) -> list[str]:
        return [str(x.calls), f"{x.cache_hits} hit / {x.cache_misses} miss", f"{x.prompt_tokens} in / {x.completion_tokens} out",
                "n/a" if x.cost_usd is None else f"${x.cost_usd:.4f}", str(x.errors), str(x.retries), f"{x.wall_s:.1f} s",
                "—" if not x.concurrency_peak else str(x.concurrency_peak),
                f"{x.throttled}" + (f" (+{x.congestion - x.throttled} 503/timeouts)" if x.congestion > x.throttled else ""),
                ", ".join(f"{k} {n}" for k, n in x.deployments.items()) or "—"]

    labels = ["calls made", "cache", "tokens", "cost (USD)", "errors", "retries", "wall time", "most calls in flight",
              "429s", "answered by"]
    return [(label, c, bb) for label, c, bb in zip(labels, cells(u), cells(b) if b is not None else [None] * len(labels))]


def _distributions(record: RunRecord, baseline: RunRecord | None, table: dict[str, Any]) -> list[str]:
    from llmops_cli.report import plots

    out = []
    for i, m in enumerate(table["metrics"]):
        cand = [row["s"][i][-1] for row in table["cases"]]
        base = [row["s"][i][0] for row in table["cases"] if not row.get("only")] if baseline is not None else None
        svg = plots.distribution_plot(m["name"], [v for v in cand if v is not None],
                                      None if base is None else [v for v in base if v is not None],
                                      scale=m["scale"], unit=m["unit"])
        if svg:
            out.append(svg)
    return out


def _latency(record: RunRecord) -> str | None:
    from llmops_cli.report import plots

    calls = [(c.latency_s, c.cached) for case in record.cases for c in case.calls if c.latency_s is not None]
    return plots.latency_histogram([t for t, cached in calls if not cached], [t for t, cached in calls if cached])


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
