"""The eval set: cases with an id, input fields and reference answers.

Also the one reader of tabular files (JSONL, CSV, JSON list of objects) that
the retrieval corpus uses too.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Dataset as DatasetSpec
from .config import canonical_json, sha256_text
from .errors import DatasetError


@dataclass(frozen=True)
class Case:
    """One eval case. ``inputs`` feed the templates; ``references`` are the
    acceptable answers (one or more strings)."""

    id: str
    inputs: dict[str, Any]
    references: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "inputs": self.inputs, "references": self.references}


def _infer_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "json"):
        return suffix
    raise DatasetError(path, None, f"cannot tell the format from the suffix {path.suffix!r}; set format: jsonl|csv|json")


def read_records(path: Path, fmt: str | None = None, what: str = "file") -> list[dict[str, Any]]:
    """Read a JSONL, CSV or JSON (a list of objects) file into a list of dicts.

    Raises:
        DatasetError: missing file, unreadable, malformed line (named by its
            line number), or a row that is not an object.
    """
    fmt = _infer_format(path, fmt)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(path, None, f"{what} not found") from None
    except IsADirectoryError:
        raise DatasetError(path, None, f"{what} is a directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, None, f"cannot read {what}: {e}") from None
    rows: list[Any]
    if fmt == "jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DatasetError(path, f"line {n}", f"invalid JSON: {e.msg}") from None
            if not isinstance(rows[-1], dict):
                raise DatasetError(path, f"line {n}", "expected a JSON object")
    elif fmt == "json":
        try:
            rows = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as e:
            raise DatasetError(path, f"line {e.lineno}", f"invalid JSON: {e.msg}") from None
        if not isinstance(rows, list):
            raise DatasetError(path, None, "expected a JSON list of objects")
        for n, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DatasetError(path, f"[{n}]", "expected a JSON object")
    else:
        try:
            rows = list(csv.DictReader(text.splitlines()))
        except csv.Error as e:
            raise DatasetError(path, None, f"invalid CSV: {e}") from None
    return rows


def _references(row: dict[str, Any], fields: list[str], path: Path, where: str) -> list[str]:
    refs: list[str] = []
    for f in fields:
        if f not in row:
            raise DatasetError(path, where, f"missing reference field {f!r}")
        v = row[f]
        if v is None or v == "":
            continue
        if isinstance(v, str):
            refs.append(v)
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):
            refs.extend(v)
        else:
            raise DatasetError(path, f"{where}.{f}", "a reference must be a string or a list of strings")
    return refs


def load_dataset(spec: DatasetSpec, base_dir: Path, limit: int | None = None) -> list[Case]:
    """Load the eval set described by ``spec`` (paths relative to ``base_dir``).

    ``spec.sample`` keeps a seeded random subset (file order kept), then
    ``spec.limit`` the first N. ``limit`` (if given) overrides both: the first
    ``limit`` cases of the file, ``0`` meaning all of them.

    Raises:
        DatasetError: unreadable file, a row without the id/input/reference
            fields, a duplicate id, or an empty eval set.
    """
    path = Path(spec.path)
    path = path if path.is_absolute() else base_dir / path
    rows = read_records(path, spec.format, "eval set")
    cases: list[Case] = []
    seen: set[str] = set()
    for n, row in enumerate(rows):
        where = f"row {n + 1}"
        if spec.id not in row or row[spec.id] in (None, ""):
            raise DatasetError(path, where, f"missing id field {spec.id!r}")
        cid = str(row[spec.id])
        if cid in seen:
            raise DatasetError(path, where, f"duplicate id {cid!r}")
        seen.add(cid)
        refs = _references(row, spec.references, path, where)
        if spec.inputs is None:
            inputs = {k: v for k, v in row.items() if k != spec.id and k not in spec.references}
        else:
            missing = [f for f in spec.inputs if f not in row]
            if missing:
                raise DatasetError(path, where, f"missing input field {missing[0]!r}")
            inputs = {k: row[k] for k in spec.inputs}
        cases.append(Case(cid, inputs, refs))
    if limit is None:
        if spec.sample and spec.sample < len(cases):
            keep = sorted(random.Random(spec.sample_seed).sample(range(len(cases)), spec.sample))
            cases = [cases[i] for i in keep]
        if spec.limit:
            cases = cases[: spec.limit]
    elif limit:
        cases = cases[:limit]
    if not cases:
        raise DatasetError(path, None, "the eval set is empty")
    return cases


def dataset_hash(cases: list[Case]) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of the cases (ids,
    inputs, references, in order) — after the mapping and the limit."""
    return sha256_text(canonical_json([c.as_dict() for c in cases]))[:16]
