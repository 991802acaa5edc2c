"""What a run record or baseline must hold before the gate reads it: only
finite numbers (:func:`check_finite`), and — for a baseline — every case its
own dataset hash covers (:func:`check_covers`). Both are bad input: exit 2,
one line naming the file, the case and the key, before any model call where
the record is read before the run.
"""

from __future__ import annotations

import math
from pathlib import Path

from llmops_cli.core.errors import BaselineError


def check_finite(record, path: str | Path) -> None:
    """Refuse a record holding NaN or ±Infinity in a case's scores or corpus
    statistics, or in a metric's aggregate (Python's JSON reader accepts
    them; a NaN baseline score made every comparison ``nan`` and the gate
    pass).

    Raises:
        BaselineError: naming the case id and the key, e.g.
            ``cases[3] (id 'q4').scores.exact_match: is NaN``.
    """
    for name, summary in record.metrics.items():
        v = summary.aggregate
        if isinstance(v, float) and not math.isfinite(v):
            raise BaselineError(path, f"metrics.{name}.aggregate", f"is {_word(v)}; a score must be a finite number")
    for i, case in enumerate(record.cases):
        for name, v in case.scores.items():
            if v is not None and not math.isfinite(v):
                raise BaselineError(path, f"cases[{i}] (id {case.id!r}).scores.{name}",
                                    f"is {_word(v)}; a score must be a finite number")
        for name, row in (getattr(case, "stats", None) or {}).items():
            if any(not math.isfinite(x) for x in row):
                raise BaselineError(path, f"cases[{i}] (id {case.id!r}).stats.{name}",
                                    "holds a non-finite number; statistics must be finite")


def _word(v: float) -> str:
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def check_covers(baseline, candidate, path: str | Path) -> None:
    """Refuse a baseline that lacks cases of the eval set its own dataset
    hash covers: when baseline and candidate were made on the same eval set
    (equal hashes), every case the candidate ran must be in the baseline —
    a case edited out of the file would otherwise leave the comparison
    silently.

    Raises:
        BaselineError: key ``cases``, naming the first missing case and how
            many are missing.
    """
    if baseline.dataset_hash != candidate.dataset_hash:
        return
    have = {c.id for c in baseline.cases}
    missing = [c.id for c in candidate.cases if c.id not in have]
    if missing:
        raise BaselineError(path, "cases", f"lacks case {missing[0]!r}{f' and {len(missing) - 1} more' if len(missing) > 1 else ''} "
                            f"of the eval set its dataset hash {baseline.dataset_hash} covers; the file was edited or "
                            "truncated: re-create it (--update-baseline)")
