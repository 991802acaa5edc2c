"""The report files: JUnit XML (one test case per gated metric and per
slice rule) and the comparison as JSON. The Markdown summary is
:mod:`.markdown`."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from ..comparison import Comparison
from ..record import RunRecord
from .text import fmt, fmt_ci, fmt_mde, fmt_p


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
