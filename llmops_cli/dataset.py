"""The eval set: cases with an id, input fields and reference answers.

Also the one reader of tabular files (JSONL, CSV, JSON list of objects) that
the retrieval corpus uses too.
"""

from __future__ import annotations

import csv
import json
import os
import random
import stat
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


def available_memory() -> int | None:
    """Bytes of memory this process can still use: the kernel's
    ``MemAvailable`` (free memory plus reclaimable caches), lowered to the
    room left under a cgroup v2 memory limit (containers, CI runners); else
    free physical pages (``os.sysconf``); ``None`` when unknown."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
                used = int(f.read())
            avail = min(avail, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return avail


def max_file_bytes() -> int | None:
    """The largest eval set or corpus file :func:`read_records` reads: half the
    memory still available (:func:`available_memory`), since the parsed rows
    take more room than the file's bytes. ``None``: no bound known."""
    avail = available_memory()
    return avail // 2 if avail is not None else None


def _csv_rows(f, path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(f)
    rows = []
    for row in reader:
        if None in row:  # DictReader's restkey: more cells than header names
            raise DatasetError(path, f"line {reader.line_num}", f"{len(reader.fieldnames or [])} columns in the header, "
                               f"{len(reader.fieldnames or []) + len(row[None])} in this row")
        rows.append(row)
    return rows


def read_records(path: Path, fmt: str | None = None, what: str = "file") -> list[dict[str, Any]]:
    """Read a JSONL, CSV or JSON (a list of objects) file into a list of dicts.

    The file is read once, as UTF-8 (a byte-order mark is dropped). JSONL
    lines end at ``\\n`` only (a ``\\r`` before it is dropped), so U+2028,
    U+2029 or U+0085 inside a JSON string stay part of it; CSV fields may hold
    quoted line breaks.

    Raises:
        DatasetError: missing file, a folder, a file larger than
            :func:`max_file_bytes`, unreadable or not UTF-8, a malformed line
            (named by its line number), a CSV row with more cells than the
            header, or a row that is not an object.
    """
    fmt = _infer_format(path, fmt)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DatasetError(path, None, f"{what} not found") from None
    except OSError as e:
        raise DatasetError(path, None, f"cannot read {what}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DatasetError(path, None, f"{what} is a directory")
    bound = max_file_bytes()
    if bound is not None and stat.S_ISREG(st.st_mode) and st.st_size > bound:
        raise DatasetError(path, None, f"{what} is {st.st_size / 1e6:,.1f} MB, more than half the memory available "
                           f"({2 * bound / 1e6:,.1f} MB); it is read whole, so it would not fit: use a smaller file")
    rows: list[Any]
    try:
        # newline="\n": lines end at "\n" only (str.splitlines would also cut at U+2028, U+2029, U+0085, \x1c-\x1e);
        # newline="": the csv module handles line ends itself, quoted line breaks included
        with open(path, encoding="utf-8-sig", newline="\n" if fmt == "jsonl" else "") as f:
            if fmt == "jsonl":
                rows = []
                for n, line in enumerate(f, 1):
                    line = line.removesuffix("\n").removesuffix("\r")
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DatasetError(path, f"line {n}", f"invalid JSON: {e.msg}") from None
                    if not isinstance(row, dict):
                        raise DatasetError(path, f"line {n}", "expected a JSON object")
                    rows.append(row)
            elif fmt == "json":
                text = f.read()
                try:
                    rows = json.loads(text) if text.strip() else []
                except json.JSONDecodeError as e:
                    raise DatasetError(path, f"line {e.lineno}", f"invalid JSON: {e.msg}") from None
                del text
                if not isinstance(rows, list):
                    raise DatasetError(path, None, "expected a JSON list of objects")
                for n, row in enumerate(rows):
                    if not isinstance(row, dict):
                        raise DatasetError(path, f"[{n}]", "expected a JSON object")
            else:
                try:
                    rows = _csv_rows(f, path)
                except csv.Error as e:
                    raise DatasetError(path, None, f"invalid CSV: {e}") from None
    except UnicodeDecodeError as e:
        raise DatasetError(path, None, f"cannot read {what}: not UTF-8 text ({e.reason})") from None
    except RecursionError:
        raise DatasetError(path, None, f"cannot read {what}: JSON nested too deeply") from None
    except OSError as e:
        raise DatasetError(path, None, f"cannot read {what}: {e.strerror or e}") from None
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


def dataset_path(spec: DatasetSpec, base_dir: Path) -> Path:
    """Where the eval set file is: ``spec.path``, relative to ``base_dir``."""
    path = Path(spec.path)
    return path if path.is_absolute() else base_dir / path


def load_dataset(spec: DatasetSpec, base_dir: Path, limit: int | None = None) -> list[Case]:
    """Load the eval set described by ``spec`` (paths relative to ``base_dir``).

    ``spec.sample`` keeps a seeded random subset (file order kept), then
    ``spec.limit`` the first N. ``limit`` (if given) overrides both: the first
    ``limit`` cases of the file, ``0`` meaning all of them.

    Raises:
        DatasetError: unreadable file, a row without the id/input/reference
            fields, a duplicate id, or an empty eval set.
    """
    path = dataset_path(spec, base_dir)
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
