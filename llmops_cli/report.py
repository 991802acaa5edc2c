"""All output formatting: the terminal (rich), Markdown, JUnit XML and JSON.

Nothing here decides anything; it renders :class:`~llmops_cli.comparison.Comparison`
and :class:`~llmops_cli.record.RunRecord` objects.
"""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from .comparison import Comparison, MetricComparison
from .dataset import input_text
from .record import RunRecord

VERDICT_STYLE = {"pass": "green", "improved": "bold green", "regressed": "bold red", "below min": "bold red",
                 "above max": "bold red", "unproven": "bold red", "unscored": "bold yellow", "info": "dim"}


def fmt(v: float | None, scale: float = 1.0, signed: bool = False, unit: str = "") -> str:
    """A score in its metric's units: 4 decimals for 0–1, 2 for 0–100, 4
    significant digits for measured quantities (``unit``: USD, s, tokens)."""
    if v is None:
        return "—"
    if unit:
        return f"{v:+.4g}" if signed else f"{v:.4g}"
    digits = 2 if scale > 1 else 4
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_ci(m: MetricComparison) -> str:
    """The interval the verdict used; its confidence is named when a
    correction widened it (e.g. ``97.5%``)."""
    if m.ci_low is None:
        return "—"
    text = f"[{fmt(m.ci_low, m.scale, True, m.unit)}, {fmt(m.ci_high, m.scale, True, m.unit)}]"
    if m.ci_confidence is not None and m.raw_ci_low is not None and (m.ci_low, m.ci_high) != (m.raw_ci_low, m.raw_ci_high):
        text += f" @{100 * m.ci_confidence:.4g}%"
    return text


def fmt_p(m: MetricComparison) -> str:
    """The p-value of the rule's test (Holm-adjusted where corrected), else
    the two-sided p of "no change"."""
    p = m.p_adjusted if m.p_adjusted is not None else (m.p_test if m.p_test is not None else m.p_value)
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_mde(m: MetricComparison) -> str:
    if m.mde is None:
        return "unknown" if m.verdict not in ("unscored",) and m.delta is not None else "—"
    return fmt(m.mde, m.scale, unit=m.unit)


def metric_notes(cmp: Comparison) -> list[str]:
    """One line per fact the table cannot show: candidate failures counted
    as the worst value, cases excluded, judge changes."""
    lines = []
    for m in cmp.metrics:
        if m.n_failed:
            worst = "empty answers" if m.scale > 1 else "0"
            lines.append(f"{m.metric}: {m.n_failed} candidate failure{'s' if m.n_failed > 1 else ''} counted as {worst}")
        if m.n_baseline_missing:
            lines.append(f"{m.metric}: {m.n_baseline_missing} case(s) the baseline did not score, excluded")
        if m.n_unscored:
            lines.append(f"{m.metric}: {m.n_unscored} candidate case(s) unscored, excluded")
        lines += [f"{m.metric}: {note}" for note in m.notes]
    return lines


def case_reason(c) -> str:
    """Why a case fell, on one line: the candidate's error, else its failed
    checks' reasons (``name: reason; ...``); empty when there is none."""
    if c.candidate_error:
        return f"error: {c.candidate_error}"
    # the checks' own reasons first: the JSON answer field's is the same fault said once more
    return "; ".join(f"{name}: {why}" for name, why in sorted(c.reasons.items(), key=lambda kv: kv[0] == "output_field"))


def _short(text: str | None, width: int = 70) -> str:
    if text is None:
        return "(error)"
    t = " ".join(text.split())
    return t if len(t) <= width else t[: width - 1] + "…"


def gate_rule_text(cmp: Comparison) -> str:
    """The rule in one sentence, as the table applied it."""
    text = _rule_sentence(cmp)
    if any(not m.higher_is_better for m in cmp.metrics):
        text += (" Costs, latencies and token counts are lower-is-better: the same test on a rise beyond max_increase "
                 "(or max_increase_pct of the baseline).")
    return text


def _rule_sentence(cmp: Comparison) -> str:
    if cmp.mode == "plain":
        return "plain mode: a metric regresses when candidate − baseline < −max_drop, or candidate < min."
    boot = f"{cmp.resamples} bootstrap resamples, interval delta ± z·SE{', clustered by ' + cmp.cluster if cmp.cluster else ''}"
    if cmp.mode == "strict":
        return (f"strict mode: a metric passes only when the {cmp.confidence:.0%} paired-bootstrap CI of candidate − baseline "
                f"lies above −max_drop ({boot}), and candidate ≥ min over the whole run.")
    holm = (f"; Holm-corrected over {cmp.family_size} gated metrics (p and CI adjusted)"
            if cmp.correction == "holm" and cmp.family_size > 1 else "")
    return (f"paired mode: a metric regresses when the {cmp.confidence:.0%} paired-bootstrap CI of candidate − baseline "
            f"lies wholly below −max_drop ({boot}{holm}), or candidate < min over the whole run. "
            "MDE: the drop caught with 80% probability under this rule.")


# -- terminal ----------------------------------------------------------------

def usage_line(u) -> str:
    """Calls, cache, tokens, USD, errors, retries, the most calls in flight
    and the 429s seen, on one line."""
    cost = f"${u.cost_usd:.4f}" if u.cost_usd is not None else "n/a"
    line = (f"calls {u.calls} · cache {u.cache_hits} hit / {u.cache_misses} miss · tokens {u.prompt_tokens} in / "
            f"{u.completion_tokens} out · cost {cost} · errors {u.errors} · retries {u.retries}")
    if u.concurrency_peak:
        line += f" · in flight ≤ {u.concurrency_peak}"
    if u.congestion:
        line += f" · 429s {u.throttled}" + (f" (+{u.congestion - u.throttled} 503/timeouts)" if u.congestion > u.throttled else "")
    return line


def print_run_summary(console, record: RunRecord) -> None:
    """Metrics and usage of one run."""
    from rich.table import Table

    part = f" (shard {record.shard.index}/{record.shard.count} of {record.shard.total})" if record.shard else ""
    console.print(f"[bold]run[/] {record.run_id} · {len(record.cases)} cases{part} · fingerprint {record.fingerprint} · "
                  f"dataset {record.dataset_hash}")
    t = Table()
    t.add_column("metric")
    t.add_column("score", justify="right")
    t.add_column("scored", justify="right")
    t.add_column("unscored", justify="right")
    t.add_column("judge self-agreement", justify="right")
    for name, m in record.metrics.items():
        agree = m.info.get("self_agreement")
        t.add_row(name, fmt(m.aggregate, m.scale, unit=m.info.get("unit", "")), f"{m.n_scored}/{m.n_scored + m.n_unscored}", str(m.n_unscored),
                  "—" if agree is None else f"{agree:.2f} ({m.info.get('disagreement_rate', 0):.0%} cases disagree)")
    console.print(t)
    console.print("model " + usage_line(record.usage) + f" · wall {record.usage.wall_s:.1f} s")
    if record.usage.slowest:
        console.print("slowest calls: " + ", ".join(f"{s['id']} {s['latency_s']:.2f} s" for s in record.usage.slowest[:3]), style="dim")
    if record.judge_usage is not None:
        console.print("judge " + usage_line(record.judge_usage))


def print_comparison(console, cmp: Comparison, top: int = 5) -> None:
    """The gate table, then config changes and the most fallen cases."""
    from rich.markup import escape
    from rich.table import Table

    for line in cmp.model_drift:
        console.print(f"[bold yellow]served model drift[/]: {line}", markup=True, highlight=False)
    if cmp.environment_changes:
        console.print("[bold]environment changes[/]: " + ", ".join(cmp.environment_changes))
    if cmp.config_changes:
        console.print("[bold]config changes[/] (baseline → candidate):")
        for line in cmp.config_changes[:12]:
            console.print(f"  {line}", markup=False)
    elif cmp.baseline_fingerprint == cmp.candidate_fingerprint:
        console.print(f"config unchanged (fingerprint {cmp.candidate_fingerprint})", style="dim")
    t = Table(title="gate", title_justify="left")
    for col in ("metric", "baseline", "candidate", "delta", f"{cmp.confidence:.0%} CI", "p", "MDE", "rule", "verdict"):
        t.add_column(col, justify="left" if col in ("metric", "rule", "verdict") else "right")
    for m in cmp.metrics:
        style = VERDICT_STYLE.get(m.verdict, "")
        t.add_row(m.metric, fmt(m.baseline, m.scale, unit=m.unit), fmt(m.candidate, m.scale, unit=m.unit), fmt(m.delta, m.scale, True, m.unit), fmt_ci(m),
                  fmt_p(m), fmt_mde(m), m.rule, f"[{style}]{m.verdict}[/]" if style else m.verdict)
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
        ct = Table(title=f"cases that fell most ({cmp.n_worse_cases} worse, {cmp.n_improved_cases} better on {fallen[0].metric})",
                   title_justify="left")
        why = any(c.reasons or c.candidate_error for c in fallen)
        for col in ("id", "question", "baseline output", "candidate output", "Δ " + fallen[0].metric) + (("why",) if why else ()):
            ct.add_column(col, overflow="fold")
        for c in fallen:
            ct.add_row(c.id, _short(input_text(c.inputs), 50), _short(c.baseline_output, 40), _short(c.candidate_output, 40),
                       fmt(c.delta, 1.0, True), *((_short(case_reason(c), 100),) if why else ()))
        console.print(ct)
    print_slices(console, cmp)
    for m in cmp.failed:
        console.print(f"[bold red]✗ {escape(m.label)} {m.verdict}[/]: {escape(m.reason)}")


def print_record_slices(console, record: RunRecord) -> None:
    """A run's per-slice aggregates (``record.slices``), one table per field."""
    from rich.markup import escape
    from rich.table import Table

    for field, values in record.slices.items():
        t = Table(title=f"by {field}", title_justify="left")
        t.add_column(field)
        t.add_column("n", justify="right")
        for name in record.metrics:
            t.add_column(name, justify="right")
        for value, entry in values.items():
            t.add_row(escape(value), str(entry["n"]), *(fmt(entry.get(name), m.scale, unit=m.info.get("unit", ""))
                                                         for name, m in record.metrics.items()))
        console.print(t)


def slice_cell(m: MetricComparison) -> str:
    """One slice's result for one metric: ``candidate (delta ± half-width)``,
    the half-width of the interval the verdict used (it is symmetric), and
    the verdict when a rule targets the slice."""
    if m.candidate is None:
        return "—"
    text = fmt(m.candidate, m.scale, unit=m.unit)
    if m.delta is not None and m.ci_high is not None:
        text += f" ({fmt(m.delta, m.scale, True, m.unit)} ± {fmt((m.ci_high - m.ci_low) / 2, m.scale, unit=m.unit)})"
    if m.verdict != "info":
        text += f" {m.verdict}"
    return text


def slice_tables(cmp: Comparison) -> dict[str, tuple[list[str], list[tuple[str, int, list[MetricComparison | None]]]]]:
    """Per slice field: the metrics (columns) and, per value, ``(value, cases,
    one comparison per metric)`` — the layout of the per-slice tables."""
    out: dict[str, tuple[list[str], dict[str, dict[str, MetricComparison]]]] = {}
    for m in cmp.slices:
        field, _, value = m.slice.partition("=")
        metrics, rows = out.setdefault(field, ([], {}))
        if m.metric not in metrics:
            metrics.append(m.metric)
        rows.setdefault(value, {})[m.metric] = m
    return {f: (metrics, [(v, max(c.n for c in row.values()), [row.get(x) for x in metrics]) for v, row in rows.items()])
            for f, (metrics, rows) in out.items()}


def print_slices(console, cmp: Comparison) -> None:
    """One table per slice field: a row per value, a column per metric."""
    from rich.markup import escape
    from rich.table import Table

    for field, (metrics, rows) in slice_tables(cmp).items():
        t = Table(title=f"by {field} (candidate (delta ± CI half-width); rules per slice join the Holm family)",
                  title_justify="left")
        t.add_column(field)
        t.add_column("n", justify="right")
        for name in metrics:
            t.add_column(name, justify="right")
        for value, n, cells in rows:
            styled = [f"[{VERDICT_STYLE[c.verdict]}]{escape(slice_cell(c))}[/]" if c and c.verdict != "info"
                      else escape(slice_cell(c)) if c else "—" for c in cells]
            t.add_row(escape(value), str(n), *styled)
        console.print(t)


# -- markdown ----------------------------------------------------------------

def markdown(cmp: Comparison, record: RunRecord | None = None, top: int = 5) -> str:
    """A PR-comment summary: verdicts, deltas with CIs, config changes and the
    top changed cases."""
    head = "✅ **llmops gate passed**" if cmp.passed else ("❌ **llmops gate failed**" if cmp.failed or cmp.drift_failed else "⚠️ **llmops gate could not decide**")
    lines = [head, ""]
    if record is not None:
        lines.append(f"{len(record.cases)} cases · fingerprint `{record.fingerprint}` · dataset `{record.dataset_hash}`")
        lines.append("")
        lines.append(f"model: {usage_line(record.usage)}  ")
        if record.judge_usage is not None:
            lines.append(f"judge: {usage_line(record.judge_usage)}  ")
            for name, m in record.metrics.items():
                if m.info.get("judge"):
                    lines.append(f"{name}: {m.n_unscored} unscored of {m.n_scored + m.n_unscored}  ")
        lines.append("")
    for line in cmp.model_drift:
        lines += [f"⚠️ served model drift: {line}  "]
    if cmp.environment_changes:
        lines += ["environment changes: " + ", ".join(cmp.environment_changes) + "  "]
    if cmp.model_drift or cmp.environment_changes:
        lines.append("")
    lines += ["| metric | baseline | candidate | delta | CI | p | MDE | rule | verdict |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for m in cmp.metrics:
        lines.append(f"| {m.metric} | {fmt(m.baseline, m.scale, unit=m.unit)} | {fmt(m.candidate, m.scale, unit=m.unit)} | {fmt(m.delta, m.scale, True, m.unit)} | "
                     f"{fmt_ci(m)} | {fmt_p(m)} | {fmt_mde(m)} | {m.rule} | **{m.verdict}** |")
    lines += ["", f"_{gate_rule_text(cmp)}_", ""]
    for field, (metrics, rows) in slice_tables(cmp).items():
        lines += [f"<details><summary>by {field}</summary>", "", f"| {field} | n | " + " | ".join(metrics) + " |",
                  "|---|---:|" + "---:|" * len(metrics)]
        for value, n, cells in rows:
            lines.append(f"| {value.replace('|', chr(92) + '|')} | {n} | "
                         + " | ".join(slice_cell(c) if c else "—" for c in cells) + " |")
        lines += ["", "</details>", ""]
    notes = metric_notes(cmp) + [f"⚠️ {w}" for w in cmp.power_warnings]
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    if cmp.config_changes:
        lines += ["**Config changes** (baseline → candidate):", "", "```"] + cmp.config_changes[:20] + ["```", ""]
    changed = cmp.changed_cases[:top]
    if changed:
        lines += [f"**Most changed cases** ({cmp.n_worse_cases} worse, {cmp.n_improved_cases} better):", "",
                  f"| id | question | baseline | candidate | Δ {changed[0].metric} | why |", "|---|---|---|---|---:|---|"]
        for c in changed:
            cells = [c.id, _short(input_text(c.inputs), 60), _short(c.baseline_output, 50), _short(c.candidate_output, 50)]
            cells = [x.replace("|", "\\|") for x in cells]
            lines.append("| " + " | ".join(cells) + f" | {fmt(c.delta, 1.0, True)} | {_short(case_reason(c), 60).replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines)


# -- junit ---------------------------------------------------------------------

def junit_xml(cmp: Comparison, suite: str = "llmops") -> str:
    """JUnit XML: one test case per compared metric; a failure carries the
    numbers (baseline, candidate, delta, CI, rule)."""
    failures = len(cmp.failed)
    errors = len(cmp.unscored)
    tested = cmp.metrics + [m for m in cmp.slices if m.verdict != "info"]  # slices with a rule
    ts = ET.Element("testsuite", name=suite, tests=str(len(tested)), failures=str(failures), errors=str(errors))
    for m in tested:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.gate", name=m.label)
        detail = (f"baseline={fmt(m.baseline, m.scale, unit=m.unit)} candidate={fmt(m.candidate, m.scale, unit=m.unit)} delta={fmt(m.delta, m.scale, True, m.unit)} "
                  f"ci={fmt_ci(m)} p={fmt_p(m)} mde={fmt_mde(m)} n={m.n} failed={m.n_failed} rule={m.rule}")
        if m.failed:
            f = ET.SubElement(tc, "failure", message=f"{m.label} {m.verdict}: {m.reason}", type=m.verdict)
            f.text = detail
        elif m.verdict == "unscored":
            e = ET.SubElement(tc, "error", message=f"{m.label}: no scored pairs", type="unscored")
            e.text = detail
        else:
            out = ET.SubElement(tc, "system-out")
            out.text = f"{m.verdict}: {detail}"
    return ET.tostring(ts, encoding="unicode", xml_declaration=True) + "\n"


def comparison_json(cmp: Comparison, record: RunRecord | None = None) -> str:
    """Machine-readable comparison."""
    d = cmp.to_dict()
    if record is not None:
        d["run"] = {"run_id": record.run_id, "fingerprint": record.fingerprint, "dataset_hash": record.dataset_hash,
                    "usage": record.usage.model_dump()}
    return json.dumps(d, indent=1, ensure_ascii=False, default=str)


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
        t.add_row(c.id, _short(input_text(c.inputs), 50), _short(" | ".join(c.references), 30), _short(c.baseline_output, 40),
                  _short(c.candidate_output, 40), fmt(c.delta, 1.0, True))
    console.print(t)


# -- the end of a run ----------------------------------------------------------

def print_error(message: str) -> None:
    """``llmops: error: <message>`` as one line on stderr (never folded)."""
    from rich.markup import escape

    terminal(stderr=True).print(f"[bold red]llmops: error:[/] {escape(message)}", soft_wrap=True)


def terminal(stderr: bool = False):
    """A rich console for the terminal; in CI logs (not a terminal) at least
    120 columns wide, so that the tables are not folded at 80."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    return console


def print_outcome(console, out, *, top: int = 5, quiet: bool = False, json_out: bool = False) -> None:
    """Render an :class:`~llmops_cli.outcome.Outcome`: notes, the run summary
    and record path, the gate table, the verdict; an error as one line on
    stderr (after the partial record's path). ``quiet`` (hooks): nothing on
    success; on failure only the gate table (if any) and the verdict.
    ``json_out`` prints the comparison as JSON on stdout (``console`` is then
    on stderr)."""
    from rich.markup import escape

    rec, cmp = out.record, out.comparison
    loud = not quiet
    for line in out.notes if loud else ():
        console.print(line, style="yellow" if line.startswith("judge changed") else "dim", markup=False)
    partial = rec is not None and rec.status != "complete"
    if loud and rec is not None and not partial:
        print_run_summary(console, rec)
        if out.record_path:
            console.print(f"run record: {out.record_path}", style="dim")
    if partial and out.record_path:
        console.print(f"partial run record: {out.record_path}", style="dim")
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
        console.print(f"[bold red]{head}[/]:{rest}")
    elif loud and out.status == "baseline written":
        console.print(f"[green]baseline written:[/] {out.baseline_path}")
    elif loud and out.status in ("shard written", "merged"):
        head, _, rest = out.reason.partition(":")
        console.print(f"[green]{escape(head)}:[/]{escape(rest)}", soft_wrap=True)
    elif loud and out.status == "valid":
        console.print(f"[green]valid:[/] {escape(out.reason)}", soft_wrap=True)
    elif loud:
        console.print("[bold green]gate passed[/]")


def print_agreement(console, rows) -> None:
    """Judge-vs-human agreement (:func:`llmops_cli.review.agreement`) as a table."""
    from rich.table import Table

    t = Table(title="judge vs human", title_justify="left")
    for col in ("judge", "labels", "accuracy", "Cohen's kappa", "judge unscored"):
        t.add_column(col, justify="left" if col == "judge" else "right")
    for a in rows:
        t.add_row(a.judge, str(a.n), "—" if a.accuracy is None else f"{a.accuracy:.3f}",
                  "—" if a.kappa is None else f"{a.kappa:.3f}", str(a.judge_unscored))
    console.print(t)


def print_cache_info(console, info: dict) -> None:
    """The cache's location, size, entries per model and memoised results (:meth:`Cache.info`)."""
    console.print(f"{info['path']}: {info['entries']} entries, {info['bytes'] / 1e6:.1f} MB")
    for model, n in sorted(info["models"].items()):
        console.print(f"  {model}: {n}")
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
        t.add_row(name, scale, "higher" if s.higher_is_better else "lower", plugins.get(name, "built-in"), s.description or "")
    console.print(t)
    for name, why in sorted(failed.items()):
        console.print(f"plugin {name} failed to load: {why}", style="yellow", markup=False)
