"""The Markdown summary of a comparison — a pull-request comment and a GitHub
job summary — and the comment body that carries a marker line.

GitHub renders Markdown and a subset of HTML in comments and caps a comment
(and a job summary) at 65,536 characters. Every text taken from a run
record — case ids, questions, references, outputs, check reasons, judge
replies, slice values, served-model names — and every name from the config
— metric, check, judge, deployment and slice names, config changes — is
untrusted: :func:`escape`
makes it show as text (no HTML, no Markdown, no ``@`` mention), and
:func:`markdown` fits the summary into a character budget whatever the
run's size: long texts are cut (saying how long they were), slice tables
and config changes are capped, and the per-case blocks stop when the budget
is spent, with a last line counting the changed cases left out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from llmops_cli.gate.comparison import CaseChange, Comparison
from llmops_cli.plan.dataset import input_text
from llmops_cli.report.text import _short, case_reason, fmt, fmt_ci, fmt_mde, fmt_p, gate_rule_text, metric_notes, slice_cell, slice_tables, usage_line
from llmops_cli.report.text import sequential_lines

if TYPE_CHECKING:
    from llmops_cli.gate.outcome import Outcome
    from llmops_cli.record.schema import RunRecord

MARKDOWN_BUDGET = 60_000  # characters; GitHub refuses a comment (or job summary) over 65,536
COMMENT_LIMIT = 65_536
MARKER_PREFIX = "<!-- llmops-gate: "
TEXT_CHARS = (1_000, 250, 60)  # characters of one question/reference/output/reason shown, tried in turn
CONFIG_LINES, CONFIG_LINE_CHARS = 20, 300
SLICE_ROWS = 30  # values shown per slice field
_TAIL = 400  # characters kept back for the closing line

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "&#92;", "`": "&#96;", "*": "&#42;", "~": "&#126;",
         "[": "&#91;", "]": "&#93;", "@": "@\u2060", "\r": "", "\n": "<br>"}
_TEXT = str.maketrans({**_HTML, "|": "&#124;"})
_CELL = str.maketrans({**_HTML, "|": "\\|"})
_EMPHASIS = re.compile(r"_(?![^\W_])|(?<![^\W_])_")  # an underscore not between letters or digits


def escape(text: str, cell: bool = False) -> str:
    """``text`` made to show as itself in a GitHub comment, on one line:
    ``& < >`` and the Markdown characters ``\\ ` * ~ [ ]`` become HTML
    entities, and so does ``_`` unless between letters or digits (where it
    cannot emphasise: ``valid_json`` stays as it is); line breaks become
    ``<br>``, ``|`` ``\\|`` in a table cell (``cell``) else ``&#124;``, and
    ``@`` is followed by a word joiner (U+2060) so that no one is mentioned."""
    return _EMPHASIS.sub("&#95;", text.translate(_CELL if cell else _TEXT))


def clip(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]} … (cut: {len(text):,} characters)"


def fenced(lines: list[str]) -> list[str]:
    """A code block around ``lines`` whose fence is longer than any run of
    backticks in them, so that no line can close it."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *lines, fence]


def markdown(cmp: Comparison, record: RunRecord | None = None, top: int = 5, *, budget: int = MARKDOWN_BUDGET) -> str:
    """The PR-comment summary of ``cmp`` in at most ``budget`` characters:
    the verdict, the run line (``record``: the candidate), the gate table,
    per-slice tables, notes, config changes, then the ``top`` most changed
    cases (fallen first, worst first), each a ``<details>`` block with the
    question, references, both outputs side by side, the scores, and the
    candidate's check reasons, error and judge replies — as many as fit,
    then a line counting the changed cases left out.

    Raises:
        ValueError: ``budget`` below 2,000 characters."""
    if budget < 2_000:
        raise ValueError(f"budget {budget} is below 2,000 characters")
    head = "\n".join(_head(cmp, record))
    slices = "\n".join(_slices(cmp))
    rest = "\n".join(_notes(cmp))
    room = budget - len(head) - len(rest) - _TAIL
    if len(slices) > room // 2:
        slices = "_Per-slice tables left out for size: see the HTML report._\n"
    text = "\n".join(part for part in (head, slices, rest) if part)
    if not cmp.changed_cases:
        return _cut(text, budget)
    cases = cmp.changed_cases[:top]
    scales = {m.metric: m.scale for m in cmp.tests}
    cases_of = record.case_map() if record is not None else {}
    parts = [f"**Most changed cases** ({cmp.n_worse_cases} worse, {cmp.n_improved_cases} better):", ""]
    used = len(text) + sum(len(p) + 1 for p in parts)
    shown = 0
    for c in cases:
        block = next((b for b in (_case_block(c, scales, cases_of.get(c.id), n) for n in TEXT_CHARS)
                      if used + len(b) + 1 + _TAIL <= budget), None)
        if block is None:
            break
        parts.append(block)
        used += len(block) + 1
        shown += 1
    more = max(cmp.n_worse_cases + cmp.n_improved_cases - sum(c.delta != 0 for c in cases[:shown]), 0)
    if more:
        parts += ["", f"_{more:,} more changed case{'s' if more != 1 else ''} not shown here: see the HTML report "
                      "(`--html`) or the run record (`llmops diff`)._"]
    return _cut("\n".join([text, *parts]), budget)


def comment_marker(config_path: str | Path) -> str:
    """The hidden first line of a gate's PR comment, one per config, e.g.
    ``<!-- llmops-gate: examples/squad-rag/llmops.yaml -->``: the path as
    given, normalised (``./a/../b.yaml`` → ``b.yaml``), on one line, with
    ``--`` broken so it cannot end the HTML comment."""
    text = " ".join(os.path.normpath(str(config_path)).replace(os.sep, "/").split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("--", "-&#45;")
    return f"{MARKER_PREFIX}{text} -->"


def comment_body(result: Comparison | Outcome, record: RunRecord | None = None, *, config_path: str | Path,
                 top: int = 5, budget: int = MARKDOWN_BUDGET) -> str:
    """The PR comment for ``result`` (a comparison, or an outcome): the
    :func:`comment_marker` line first, then the :func:`markdown` summary —
    or, for an outcome without a comparison (bad input, a run that could not
    complete, an interruption), one line with its exit code and reason. At
    most ``budget`` characters."""
    marker = comment_marker(config_path)
    if isinstance(result, Comparison):
        return f"{marker}\n{markdown(result, record, top, budget=budget - len(marker) - 1)}"
    if result.comparison is not None:
        return f"{marker}\n{markdown(result.comparison, result.record, top, budget=budget - len(marker) - 1)}"
    return no_verdict_comment(config_path, result.exit_code, result.reason)


def no_verdict_comment(config_path: str | Path, exit_code: int, reason: str = "") -> str:
    """The PR comment of a gate that ended without a comparison (exit 2, 3,
    130 or 143): the marker line, then what happened and where to look —
    so that an earlier comment's verdict does not stay up."""
    from llmops_cli.gate.outcome import EXIT_CODES

    status = {**{code: s for s, code in reversed(EXIT_CODES.items())}, 143: "terminated"}.get(exit_code, "failed")
    why = f": {escape(clip(reason, 2_000))}" if reason else ""
    return (f"{comment_marker(config_path)}\n⚠️ **llmops gate could not decide** — exit {exit_code} ({status}){why}\n\n"
            "See the job's log.\n")


# -- parts ---------------------------------------------------------------------------------------

def _head(cmp: Comparison, record: RunRecord | None) -> list[str]:
    head = "✅ **llmops gate passed**" if cmp.passed else ("❌ **llmops gate failed**" if cmp.failed or cmp.drift_failed else "⚠️ **llmops gate could not decide**")
    lines = [head, ""]
    seq = sequential_lines(cmp)  # a sequential run: where it stopped
    if seq:
        lines += [f"**{escape(seq[0])}**  "] + [f"{escape(line)}  " for line in seq[1:]] + [""]
    if cmp.commits:  # --baseline-ref
        lines += [f"baseline {escape(cmp.commits.get('baseline', '?'))} · candidate "
                  f"{escape(cmp.commits.get('candidate', '?'))}", ""]
    if record is not None:
        lines.append(f"{len(record.cases)} cases · fingerprint `{record.fingerprint}` · dataset `{record.dataset_hash}`")
        lines.append("")
        lines.append(f"model: {escape(usage_line(record.usage))}  ")
        if record.judge_usage is not None:
            lines.append(f"judge: {escape(usage_line(record.judge_usage))}  ")
            for name, summ in record.metrics.items():
                if summ.info.get("judge"):
                    lines.append(f"{escape(name)}: {summ.n_unscored} unscored of {summ.n_scored + summ.n_unscored}  ")
        lines.append("")
    lines += [f"⚠️ served model drift: {escape(clip(line, 300))}  " for line in cmp.model_drift[:10]]
    if cmp.environment_changes:
        lines += ["environment changes: " + escape(clip(", ".join(cmp.environment_changes), 1_000)) + "  "]
    if cmp.model_drift or cmp.environment_changes:
        lines.append("")
    lines += ["| metric | baseline | candidate | delta | CI | p | MDE | rule | verdict |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for m in cmp.metrics:
        lines.append(f"| {escape(m.metric, True)} | {fmt(m.baseline, m.scale, unit=m.unit)} | {fmt(m.candidate, m.scale, unit=m.unit)} | {fmt(m.delta, m.scale, True, m.unit)} | "
                     f"{fmt_ci(m)} | {fmt_p(m)} | {fmt_mde(m)} | {escape(m.rule, True)} | **{m.verdict}** |")
    return lines + ["", f"_{escape(gate_rule_text(cmp))}_", ""]


def _slices(cmp: Comparison) -> list[str]:
    lines = []
    for field, (metrics, rows) in slice_tables(cmp).items():
        lines += [f"<details><summary>by {escape(field)}</summary>", "", f"| {escape(field, True)} | n | "
                  + " | ".join(escape(m, True) for m in metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
        for value, n, cells in rows[:SLICE_ROWS]:
            lines.append(f"| {escape(clip(value, 80), True)} | {n} | "
                         + " | ".join(slice_cell(c) if c else "—" for c in cells) + " |")
        if len(rows) > SLICE_ROWS:
            lines.append(f"| _{len(rows) - SLICE_ROWS:,} more values: see the HTML report_ | | " + " | " * (len(metrics) - 1) + " |")
        lines += ["", "</details>", ""]
    return lines


def _notes(cmp: Comparison) -> list[str]:
    lines = []
    notes = metric_notes(cmp) + [f"⚠️ {w}" for w in cmp.power_warnings]
    if notes:
        lines += [f"- {escape(n)}" for n in notes] + [""]
    if cmp.config_changes:
        shown = [clip(line, CONFIG_LINE_CHARS) for line in cmp.config_changes[:CONFIG_LINES]]
        if len(cmp.config_changes) > CONFIG_LINES:
            shown.append(f"… {len(cmp.config_changes) - CONFIG_LINES} more")
        lines += ["**Config changes** (baseline → candidate):", "", *fenced(shown), ""]
    return lines


def _case_block(c: CaseChange, scales: dict[str, float], case, limit: int) -> str:
    """One changed case as a ``<details>`` block; texts cut at ``limit``
    characters. ``case``: the candidate's case record (judge replies), or None."""
    scale = scales.get(c.metric, 1.0)
    b, a = c.scores.get(c.metric, (None, None))
    delta = fmt(a - b, scale, True) if a is not None and b is not None else fmt(c.delta, 1.0, True)
    summary = f"<b>{escape(clip(c.id, 100))}</b> · {escape(c.metric)} {fmt(b, scale)} → {fmt(a, scale)} ({delta})"
    why = case_reason(c)
    if why:
        summary += " · " + escape(_short(why, 120))

    def cell(text: str | None, missing: str = "—") -> str:
        if text is None:
            return missing
        return escape(clip(text, limit), True) if text else "_(empty)_"

    def scores(side: int) -> str:
        return " · ".join(f"{escape(m, True)} {fmt(pair[side], scales.get(m, 1.0))}" for m, pair in c.scores.items())

    failed = "_(failed: " + escape(clip(c.candidate_error, limit), True) + ")_" if c.candidate_error else "_(no output)_"
    lines = [f"<details><summary>{summary}</summary>", "", "| question | reference |", "|---|---|",
             f"| {cell(input_text(c.inputs))} | {cell(chr(10).join(c.references))} |", "",
             "| baseline | candidate |", "|---|---|",
             f"| {cell(c.baseline_output, '_(no output)_')} | {cell(c.candidate_output, failed)} |",
             f"| {scores(0)} | {scores(1)} |"]
    why_rows = [(name, text) for name, text in sorted(c.reasons.items())]
    for name, results in (case.judges.items() if case is not None else ()):
        if results and results[0].samples and results[0].samples[0].output:
            why_rows.append((f"judge {name} ({results[0].verdict or 'unscored'})", results[0].samples[0].output))  # escaped below
    if why_rows:
        lines += ["", "| check / judge | why |", "|---|---|"] + [f"| {escape(n, True)} | {cell(t)} |" for n, t in why_rows]
    return "\n".join(lines + ["", "</details>", ""])


def _cut(text: str, budget: int) -> str:
    """``text`` within ``budget`` characters — cut at a line, saying so —
    for a summary whose fixed parts alone (e.g. hundreds of gated metrics)
    overrun it."""
    if len(text) <= budget:
        return text
    note = "\n\n_Summary cut to fit GitHub's size limit: see the HTML report._\n"
    head = text[: budget - len(note)]
    return head[: head.rfind("\n") + 1 or len(head)] + note
