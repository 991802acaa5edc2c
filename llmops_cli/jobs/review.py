"""Sampled human review of judge verdicts.

``sample_for_review`` writes a reproducible random sample of a run's cases
(input, context, answer, references, judge verdicts, an empty column per judge
for the human label) to CSV or JSONL; ``agreement`` reads the filled file back
and reports, per judge, accuracy and Cohen's kappa (Cohen 1960,
κ = (p_o − p_e) / (1 − p_e)) against the human labels, with the number of labels.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_cli.core.files import read_records
from llmops_cli.core.errors import InputError
from llmops_cli.plan.dataset import input_text
from llmops_cli.core.files import atomic_write_text
from llmops_cli.record.schema import RunRecord

HUMAN_SUFFIX = "_human"
JUDGE_SUFFIX = "_judge"


def judge_names(record: RunRecord) -> list[str]:
    return [name for name, m in record.metrics.items() if m.info.get("judge")]


def sample_rows(record: RunRecord, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` cases drawn without replacement by ``random.Random(seed)``
    (all cases if fewer), in run order, as flat rows."""
    judges = judge_names(record)
    if not judges:
        raise InputError(record.run_id, "metrics", "this run has no judge scorers to review")
    idx = sorted(random.Random(seed).sample(range(len(record.cases)), min(n, len(record.cases))))
    rows = []
    for i in idx:
        c = record.cases[i]
        row = {
            "id": c.id, "input": input_text(c.inputs),
            "context": "\n\n".join(f"[{ch.id}] {ch.text or ''}" for ch in c.retrieval.chunks) if c.retrieval else "",
            "answer": c.output if c.output is not None else "", "references": " | ".join(c.references),
        }
        for j in judges:
            res = c.judges.get(j) or []
            row[j + JUDGE_SUFFIX] = (res[0].verdict or "") if res else ""
            row[j + HUMAN_SUFFIX] = ""
        rows.append(row)
    return rows


def write_rows(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as CSV (``.csv``) or JSONL (anything else), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["id"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return atomic_write_text(path, buf.getvalue())
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@dataclass
class Agreement:
    """Judge-vs-human agreement for one judge: ``n`` labelled cases where the
    judge gave a verdict, ``accuracy`` and ``kappa`` (None when undefined),
    ``judge_unscored`` labelled cases the judge left unscored."""

    judge: str
    n: int
    accuracy: float | None
    kappa: float | None
    judge_unscored: int


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels (same length). None if undefined
    (both raters used one and the same single label)."""
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if pe == 1:
        return None
    return (po - pe) / (1 - pe)


def agreement(path: str | Path) -> list[Agreement]:
    """Read a filled review file (CSV or JSONL) and compute agreement per
    judge. Labels compare case-insensitively (C/P/I, or rubric integers).

    Raises:
        DatasetError: unreadable file. InputError: no ``*_human`` column.
    """
    path = Path(path)
    rows = read_records(path, "csv" if path.suffix.lower() == ".csv" else "jsonl", "review file")
    if not rows:
        raise InputError(path, None, "the review file is empty")
    judges = [k[: -len(HUMAN_SUFFIX)] for k in rows[0] if k.endswith(HUMAN_SUFFIX)]
    if not judges:
        raise InputError(path, None, f"no *{HUMAN_SUFFIX} column to read labels from")
    out = []
    for j in judges:
        pairs, unscored = [], 0
        for r in rows:
            human = str(r.get(j + HUMAN_SUFFIX) or "").strip().upper()
            if not human:
                continue
            judge = str(r.get(j + JUDGE_SUFFIX) or "").strip().upper()
            if not judge:
                unscored += 1
                continue
            pairs.append((judge, human))
        acc = sum(x == y for x, y in pairs) / len(pairs) if pairs else None
        out.append(Agreement(j, len(pairs), acc, cohen_kappa([p[0] for p in pairs], [p[1] for p in pairs]), unscored))
    return out
