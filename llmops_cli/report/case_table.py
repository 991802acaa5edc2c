"""The data of the HTML report's per-case table: every case of the run, with
its baseline counterpart, as plain JSON-able data the page's script renders
(and searches, filters and sorts) as text — never as markup.

The candidate's scores are those the gate counts (:func:`~llmops_cli.gate.pairing.counted`:
a failed case as the metric's worst value, an unscored one as None, shown
"—", never 0). Retrieved chunks' texts are stored once per chunk id.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llmops_cli.record.spool import whole
from llmops_cli.gate.comparison import CaseChange
from llmops_cli.plan.dataset import input_text
from llmops_cli.gate.pairing import counted, higher_is_better, scale_of, unit_of
from llmops_cli.record.schema import CaseRecord, RunRecord
from llmops_cli.report.text import case_reason

MAX_REPLY_CHARS = 2000  # a judge's reply (its reasoning) beyond this is cut, the run record keeps it whole


def case_table(record: RunRecord, baseline: RunRecord | None = None,
               changes: list[CaseChange] | None = None, default_metric: str | None = None) -> dict[str, Any]:
    """The table's data.

    Args:
        record: the candidate run (or the run alone).
        baseline: the baseline record; None shows the run alone.
        changes: the changed cases (:func:`llmops_cli.gate.pairing.case_changes`,
            all of them, not the top few): each one's ``delta`` (scaled to
            0–1, the gate's ranking) and ``metric`` set the default sort.
        default_metric: the metric the table opens on (e.g. the first gated).

    Returns:
        ``{"compared": bool, "metrics": [{name, scale, unit, higher}],
        "metric": default, "chunks": {chunk id: text}, "cases": [...]}``;
        each case ``{"id", "q" (question), "in" (other inputs), "ref",
        "c" (output), "b" (baseline output), "err", "s" (per metric
        [baseline, candidate] or [score]), "d"/"dm" (change and its metric
        index), "why", "reasons", "ch" (chunks: [id, score]), "j" (judges),
        "sl" (slices)}``, keys with nothing to say left out."""
    names = list(record.metrics)
    index = {m: i for i, m in enumerate(names)}
    bmap = baseline.case_map() if baseline is not None else {}
    moved = {c.id: c for c in changes or []}
    chunks: dict[str, str] = {}
    rows = [_row(whole(case), bmap.get(case.id), names, index, moved.get(case.id), chunks, baseline is not None)
            for case in record.cases]
    metrics = [{"name": m, "scale": record.metrics[m].scale or scale_of(m),
                "unit": record.metrics[m].info.get("unit") or unit_of(m), "higher": higher_is_better(m)} for m in names]
    return {"compared": baseline is not None, "metrics": metrics,
            "metric": default_metric if default_metric in index else (names[0] if names else None),
            "chunks": chunks, "cases": rows}


def _row(case: CaseRecord, base: CaseRecord | None, names: list[str], index: dict[str, int], change: CaseChange | None,
         chunks: dict[str, str], compared: bool) -> dict[str, Any]:
    q = input_text(case.inputs)
    row: dict[str, Any] = {"id": case.id, "q": q, "c": case.output}
    rest = {k: v for k, v in case.inputs.items() if not (isinstance(v, str) and v == q)}
    if rest:
        row["in"] = rest
    if case.references:
        row["ref"] = case.references
    if case.error:
        row["err"] = case.error
    if compared:
        row["s"] = [[None if base is None else _num(base.scores.get(m)), _num(counted(case, m))] for m in names]
        if base is not None:
            row["b"] = base.output
            if base.error:
                row["berr"] = base.error
        else:
            row["only"] = True  # not in the baseline: not compared
    else:
        row["s"] = [[_num(case.scores.get(m))] for m in names]
    if change is not None:
        row["d"], row["dm"] = change.delta, index.get(change.metric)
    why = case_reason(change) if change is not None else ""
    if why:
        row["why"] = why
    if case.reasons:
        row["reasons"] = dict(case.reasons)
    if case.slices:
        row["sl"] = dict(case.slices)
    if case.retrieval is not None:
        row["ch"] = [[c.id, _num(round(c.score, 4))] for c in case.retrieval.chunks]
        for c in case.retrieval.chunks:
            if c.text is not None:
                chunks.setdefault(c.id, c.text)
        if base is not None and base.retrieval is not None and [c.id for c in base.retrieval.chunks] != [x[0] for x in row["ch"]]:
            row["bch"] = [c.id for c in base.retrieval.chunks]
    judged = _judges(case)
    if judged:
        row["j"] = judged
    return row


def _judges(case: CaseRecord) -> list[dict[str, Any]]:
    """Each judge's verdict per repeat and its samples' replies (the
    reasoning, cut at :data:`MAX_REPLY_CHARS`)."""
    out = []
    for name, results in case.judges.items():
        for repeat, r in enumerate(results):
            replies = []
            for s in r.samples:
                text = s.output if s.output is not None else f"(no reply: {s.error})"
                if len(text) > MAX_REPLY_CHARS:
                    text = text[:MAX_REPLY_CHARS] + " … (cut; the run record has the whole reply)"
                replies.append({"v": s.verdict, "t": text})
            out.append({"n": name, "k": repeat, "v": r.verdict, "x": _num(r.value), "a": _num(r.agreement), "r": replies})
    return out


def _num(v: float | None) -> float | None:
    """A finite number, else None (JSON has no NaN or infinity)."""
    return v if v is None or math.isfinite(v) else None


def script_json(data: Any) -> str:
    """``data`` as JSON safe inside ``<script type="application/json">``:
    ``<``, ``>`` and ``&`` (and U+2028/U+2029) as ``\\uXXXX`` escapes, so no
    text from a record can close the element or open another; ``JSON.parse``
    reads them back as the characters they were."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text
