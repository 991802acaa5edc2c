"""The report files: the Markdown summary (a pull-request comment), JUnit
XML (one test case per gated metric and per slice rule) and the comparison
as JSON."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from ..comparison import Comparison
from ..dataset import input_text
from ..record import RunRecord
from .text import _short, case_reason, fmt, fmt_ci, fmt_mde, fmt_p, gate_rule_text, metric_notes, slice_cell, slice_tables, usage_line


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
