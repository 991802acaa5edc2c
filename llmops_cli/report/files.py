"""The report files: JUnit XML (one test case per gated metric and per
slice rule) and the comparison as JSON, and :func:`write_reports`, which
writes every report a run asked for (the Markdown summary is
:mod:`.markdown`, the HTML report :mod:`.html`)."""

from __future__ import annotations

import json
import os
from xml.etree import ElementTree as ET

from llmops_cli.gate.comparison import Comparison
from llmops_cli.record.schema import RunRecord
from llmops_cli.report.text import fmt, fmt_ci, fmt_mde, fmt_p


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


def write_reports(out, opts, baseline=None) -> None:
    """For an :class:`~llmops_cli.gate.outcome.Outcome` ``out`` and the
    :class:`~llmops_cli.jobs.evaluate.EvalOptions` ``opts``: write the Markdown summary (``opts.markdown``, and appended to
    ``$GITHUB_STEP_SUMMARY`` when set), the PR comment (``opts.comment``),
    the JUnit XML (``opts.junit``) and the HTML report (``opts.html``;
    ``baseline``: the baseline record, for its per-case table and plots).

    Raises:
        OutputError: a report cannot be written (names the file)."""
    from llmops_cli.core.files import append_text, atomic_write_text
    from llmops_cli.report.markdown import comment_body, markdown

    md = markdown(out.comparison, out.record, opts.top)
    if opts.markdown:
        atomic_write_text(opts.markdown, md + "\n")
    if opts.comment:
        config = opts.config or (out.record.config_path if out.record is not None else None) or "llmops.yaml"
        atomic_write_text(opts.comment, comment_body(out.comparison, out.record, config_path=config, top=opts.top))
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        append_text(os.environ["GITHUB_STEP_SUMMARY"], md + "\n")
    if opts.junit:
        atomic_write_text(opts.junit, junit_xml(out.comparison))
    if opts.html:
        from llmops_cli.report.html import html_report

        atomic_write_text(opts.html, html_report(out.record, out.comparison, baseline=baseline, outcome=out))
