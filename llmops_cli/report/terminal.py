"""The terminal (rich): a run's summary and slices, the gate table, the
per-slice tables, the fallen cases, the verdict line, errors, and the
tables of ``cache info``, ``scorers`` and ``review import``."""

from __future__ import annotations

import re

# data in a rich string with markup goes through escape: its "[" escaped (a "[/]" in an answer is text); its control
# characters are the console's (terminal)
from rich.markup import escape

from llmops_cli.gate.comparison import Comparison
from llmops_cli.plan.dataset import input_text
from llmops_cli.record.schema import RunRecord
from llmops_cli.report.files import comparison_json
from llmops_cli.report.text import _short, case_reason, fmt, fmt_ci, fmt_mde, fmt_p, gate_rule_text, metric_notes, slice_cell, slice_tables, usage_line
from llmops_cli.report.text import sequential_lines

VERDICT_STYLE = {"pass": "green", "improved": "bold green", "regressed": "bold red", "below min": "bold red",
                 "above max": "bold red", "unproven": "bold red", "unscored": "bold yellow", "info": "dim"}


# C0 and C1 control characters but tab and newline: a model's answer, a case id or a file name holding ESC could
# otherwise clear the screen, move the cursor, write the clipboard (OSC 52) or fake a line in the terminal or CI log
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with each control character (C0 but tab and newline, DEL,
    C1) shown as ``\\xNN``: data reaches the terminal as text, never as a
    terminal command."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def print_run_summary(console, record: RunRecord) -> None:
    """Metrics and usage of one run."""
    from rich.table import Table

    part = f" (shard {record.shard.index}/{record.shard.count} of {record.shard.total})" if record.shard else ""
    if record.sequential is not None:
        part += f" answered of {record.sequential.total} (sequential)"
    console.print(f"[bold]run[/] {escape(record.run_id)} · {len(record.cases)} cases{part} · fingerprint "
                  f"{escape(record.fingerprint)} · dataset {escape(record.dataset_hash)}")
    t = Table()
    t.add_column("metric")
    t.add_column("score", justify="right")
    t.add_column("scored", justify="right")
    t.add_column("unscored", justify="right")
    judged = any(m.info.get("judge") for m in record.metrics.values())  # the column only when a judge is listed
    if judged:
        t.add_column("judge self-agreement", justify="right")
    for name, m in record.metrics.items():
        agree = m.info.get("self_agreement")
        t.add_row(escape(name), fmt(m.aggregate, m.scale, unit=m.info.get("unit", "")), f"{m.n_scored}/{m.n_scored + m.n_unscored}", str(m.n_unscored),
                  *(("—" if agree is None else f"{agree:.2f} ({m.info.get('disagreement_rate', 0):.0%} cases disagree)",)
                    if judged else ()))
    console.print(t)
    console.print("model " + usage_line(record.usage) + f" · wall {record.usage.wall_s:.1f} s", markup=False)
    if record.usage.slowest:
        console.print("slowest calls: " + ", ".join(f"{s['id']} {s['latency_s']:.2f} s" for s in record.usage.slowest[:3]), style="dim",
                      markup=False)
    if record.judge_usage is not None:
        console.print("judge " + usage_line(record.judge_usage), markup=False)

def print_comparison(console, cmp: Comparison, top: int = 5) -> None:
    """The commits compared (``--baseline-ref``), the gate table, then config
    changes and the most fallen cases."""
    from rich.table import Table

    if cmp.commits:  # --baseline-ref: the commit each side was read from
        console.print(f"[bold]baseline[/] {escape(cmp.commits.get('baseline', '?'))} · [bold]candidate[/] "
                      f"{escape(cmp.commits.get('candidate', '?'))}", soft_wrap=True)
    for i, line in enumerate(sequential_lines(cmp)):  # a sequential run: where it stopped
        console.print(line, style="bold" if i == 0 else "dim", markup=False, highlight=False)
    for line in cmp.model_drift:
        # served model names come from the server, versions from the baseline file: text, never markup
        console.print(f"[bold yellow]served model drift[/]: {escape(line)}", markup=True, highlight=False)
    if cmp.environment_changes:
        console.print("[bold]environment changes[/]: " + escape(", ".join(cmp.environment_changes)))
    if cmp.config_changes:
        console.print("[bold]config changes[/] (baseline → candidate):")
        for line in cmp.config_changes[:12]:
            console.print(f"  {line}", markup=False)
    elif cmp.baseline_fingerprint == cmp.candidate_fingerprint:
        console.print(f"config unchanged (fingerprint {cmp.candidate_fingerprint})", style="dim", markup=False)
    t = Table(title="gate", title_justify="left")
    counts = any(m.n_unscored for m in cmp.metrics)  # a metric left answered cases unscored: show how many were compared
    for col in ("metric", "baseline", "candidate", "delta", f"{cmp.confidence:.0%} CI", "p", "MDE", "rule", "verdict"):
        t.add_column(col, justify="left" if col in ("metric", "rule", "verdict") else "right")
        if counts and col == "metric":
            t.add_column("scored", justify="right")
    for m in cmp.metrics:
        style = VERDICT_STYLE.get(m.verdict, "")
        t.add_row(escape(m.metric), *((f"{m.n}/{m.n + m.n_unscored}",) if counts else ()), fmt(m.baseline, m.scale, unit=m.unit),
                  fmt(m.candidate, m.scale, unit=m.unit), fmt(m.delta, m.scale, True, m.unit), fmt_ci(m),
                  fmt_p(m), fmt_mde(m), escape(m.rule), f"[{style}]{m.verdict}[/]" if style else m.verdict)
    console.print(t)
    console.print(gate_rule_text(cmp), style="dim")
    for line in metric_notes(cmp):
        console.print(line, style="yellow", markup=False)
    for line in cmp.power_warnings:
        console.print(f"warning: {line}", style="yellow", markup=False)
    if cmp.only_baseline or cmp.only_candidate:
        console.print(f"unpaired cases excluded: {len(cmp.only_baseline)} only in baseline, {len(cmp.only_candidate)} only in candidate",
                      style="yellow")
    fallen = [c for c in cmp.changed_cases if c.delta < 0][:top]
    if fallen:
        ct = Table(title=f"cases that fell most ({cmp.n_worse_cases} worse, {cmp.n_improved_cases} better on {escape(fallen[0].metric)})",
                   title_justify="left")
        why = any(c.reasons or c.candidate_error for c in fallen)
        for col in ("id", "question", "baseline output", "candidate output", "Δ " + fallen[0].metric) + (("why",) if why else ()):
            ct.add_column(col, overflow="fold")
        for c in fallen:
            # case ids, inputs and answers are data (a model's answer may hold "[/]"): text, never markup
            ct.add_row(*map(escape, (c.id, _short(input_text(c.inputs), 50), _short(c.baseline_output, 40),
                                     _short(c.candidate_output, 40))),
                       fmt(c.delta, 1.0, True), *((escape(_short(case_reason(c), 100)),) if why else ()))
        console.print(ct)
    print_slices(console, cmp)
    for m in cmp.failed:
        console.print(f"[bold red]✗ {escape(m.label)} {m.verdict}[/]: {escape(m.reason)}")

def print_record_slices(console, record: RunRecord) -> None:
    """A run's per-slice aggregates (``record.slices``), one table per field."""
    from rich.table import Table

    for field, values in record.slices.items():
        t = Table(title=f"by {escape(field)}", title_justify="left")
        t.add_column(escape(field))
        t.add_column("n", justify="right")
        for name in record.metrics:
            t.add_column(escape(name), justify="right")
        for value, entry in values.items():
            t.add_row(escape(value), str(entry["n"]), *(fmt(entry.get(name), m.scale, unit=m.info.get("unit", ""))
                                                         for name, m in record.metrics.items()))
        console.print(t)

def print_slices(console, cmp: Comparison) -> None:
    """One table per slice field: a row per value, a column per metric."""
    from rich.table import Table

    for field, (metrics, rows) in slice_tables(cmp).items():
        t = Table(title=f"by {escape(field)} (candidate (delta ± CI half-width); rules per slice join the Holm family)",
                  title_justify="left")
        t.add_column(escape(field))
        t.add_column("n", justify="right")
        for name in metrics:
            t.add_column(escape(name), justify="right")
        for value, n, cells in rows:
            styled = [f"[{VERDICT_STYLE[c.verdict]}]{escape(slice_cell(c))}[/]" if c and c.verdict != "info"
                      else escape(slice_cell(c)) if c else "—" for c in cells]
            t.add_row(escape(value), str(n), *styled)
        console.print(t)

def print_changed_cases(console, cmp: Comparison, top: int = 10) -> None:
    """Side-by-side outputs of the most changed cases (both directions)."""
    from rich.table import Table

    cases = cmp.changed_cases[:top]
    if not cases:
        console.print("no case changed", style="dim")
        return
    t = Table(title=f"most changed cases ({cmp.n_worse_cases} worse, {cmp.n_improved_cases} better)", title_justify="left")
    for col in ("id", "question", "reference", "A output", "B output", "Δ " + cases[0].metric):
        t.add_column(col, overflow="fold")
    for c in cases:
        t.add_row(*map(escape, (c.id, _short(input_text(c.inputs), 50), _short(" | ".join(c.references), 30),
                                _short(c.baseline_output, 40), _short(c.candidate_output, 40))), fmt(c.delta, 1.0, True))
    console.print(t)

def print_error(message: str) -> None:
    """``llmops: error: <message>`` as one line on stderr (never folded)."""

    terminal(stderr=True).print(f"[bold red]llmops: error:[/] {escape(message)}", soft_wrap=True)

def terminal(stderr: bool = False):
    """A rich console for the terminal; in CI logs (not a terminal) at least
    120 columns wide, so that the tables are not folded at 80."""
    from rich.console import Console

    class TextConsole(Console):
        """Every string it renders — printed, a table's cell, header or title
        — reaches the terminal as text: control characters :func:`visible`."""

        def render_str(self, text: str, **kwargs):  # type: ignore[override]
            return super().render_str(visible(text), **kwargs)

    console = TextConsole(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    return console

def print_outcome(console, out, *, top: int = 5, quiet: bool = False, json_out: bool = False) -> None:
    """Render an :class:`~llmops_cli.gate.outcome.Outcome`: notes, the run summary
    and record path, the gate table, the verdict; an error as one line on
    stderr (after the partial record's path). ``quiet`` (hooks): nothing on
    success; on failure only the gate table (if any) and the verdict.
    ``json_out`` prints the comparison as JSON on stdout (``console`` is then
    on stderr)."""

    rec, cmp = out.record, out.comparison
    loud = not quiet
    for line in out.notes if loud else ():
        console.print(line, style="yellow" if line.startswith("judge changed") else "dim", markup=False)
    partial = rec is not None and rec.status != "complete"
    if loud and rec is not None and not partial:
        print_run_summary(console, rec)
        if out.record_path:
            console.print(f"run record: {out.record_path}", style="dim", markup=False)
    if partial and out.record_path:
        console.print(f"partial run record: {out.record_path}", style="dim", markup=False)
    if loud and rec is not None and not partial and cmp is None:
        print_record_slices(console, rec)
    if cmp is not None and (loud or not out.ok):
        print_comparison(console, cmp, top)
    if json_out and cmp is not None and out.error is None:
        print(comparison_json(cmp, rec))
    if out.error is not None or out.exit_code in (2, 3):
        print_error(out.reason)
    elif out.status == "regressed":
        head, _, rest = out.reason.partition(":")
        console.print(f"[bold red]{head}[/]:{escape(rest)}")
    elif loud and out.status == "baseline written":
        console.print(f"[green]baseline written:[/] {escape(str(out.baseline_path))}")
    elif loud and out.status in ("shard written", "merged"):
        head, _, rest = out.reason.partition(":")
        console.print(f"[green]{escape(head)}:[/]{escape(rest)}", soft_wrap=True)
    elif loud and out.status == "valid":
        console.print(f"[green]valid:[/] {escape(out.reason)}", soft_wrap=True)
    elif loud:
        console.print("[bold green]gate passed[/]")

def print_agreement(console, rows) -> None:
    """Judge-vs-human agreement (:func:`llmops_cli.jobs.review.agreement`) as a table."""
    from rich.table import Table

    t = Table(title="judge vs human", title_justify="left")
    for col in ("judge", "labels", "accuracy", "Cohen's kappa", "judge unscored"):
        t.add_column(col, justify="left" if col == "judge" else "right")
    for a in rows:
        t.add_row(escape(a.judge), str(a.n), "—" if a.accuracy is None else f"{a.accuracy:.3f}",
                  "—" if a.kappa is None else f"{a.kappa:.3f}", str(a.judge_unscored))
    console.print(t)

def print_cache_info(console, info: dict) -> None:
    """The cache's location, size, entries per model and memoised results (:meth:`Cache.info`)."""
    console.print(f"{info['path']}: {info['entries']} entries, {info['bytes'] / 1e6:.1f} MB", markup=False)
    for model, n in sorted(info["models"].items()):
        console.print(f"  {model}: {n}", markup=False)
    if info["memo"]:
        console.print("memoised results: " + ", ".join(f"{kind} {n}" for kind, n in sorted(info["memo"].items())))

def print_scorers(console, scorers: dict, plugins: dict[str, str], failed: dict[str, str]) -> None:
    """The registered scorers: name, range (or unit), which way is better,
    where it comes from, description;
    then the plugins that failed to load."""
    from rich.table import Table

    t = Table(title="scorers", title_justify="left")
    for col in ("name", "range / unit", "better", "from", "description"):
        t.add_column(col, overflow="fold")
    for name in sorted(scorers):
        s = scorers[name]
        scale = s.unit or f"0–{s.scale:g}"
        t.add_row(escape(name), escape(scale), "higher" if s.higher_is_better else "lower", escape(plugins.get(name, "built-in")),
                  escape(s.description or ""))
    console.print(t)
    for name, why in sorted(failed.items()):
        console.print(f"plugin {name} failed to load: {why}", style="yellow", markup=False)


class progress_bar:
    """A transient progress bar on a terminal; nothing in CI logs or with ``--quiet``."""

    def __init__(self, console, quiet: bool):
        self.bar = None
        if console.is_terminal and not quiet:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("answering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), console=console, transient=True)

    def __enter__(self):
        if self.bar is None:
            return None
        self.bar.__enter__()
        task = self.bar.add_task("answering", total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc) if self.bar is not None else False
