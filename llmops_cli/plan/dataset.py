"""The eval set: cases with an id, input fields and reference answers,
read with :func:`llmops_cli.core.files.read_records`, and the dataset hash.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_cli.config import Dataset as DatasetSpec
from llmops_cli.core.files import read_records
from llmops_cli.core.fingerprint import canonical_json, sha256_text
from llmops_cli.core.errors import DatasetError


@dataclass(frozen=True, slots=True)
class Case:
    """One eval case. ``inputs`` feed the templates; ``references`` are the
    acceptable answers (one or more strings); ``slices``: the value of each
    ``dataset.slices`` field (as text), which groups the report and is not
    part of the dataset hash."""

    id: str
    inputs: dict[str, Any]
    references: list[str] = field(default_factory=list)
    slices: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "inputs": self.inputs, "references": self.references}


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


def _slices(row: dict[str, Any], fields: list[str], path: Path, where: str) -> dict[str, str]:
    out = {}
    for f in fields:
        v = row.get(f)
        if v is None or v == "":
            raise DatasetError(path, where, f"missing slice field {f!r} (dataset.slices); every case needs a value")
        if isinstance(v, (dict, list)):
            raise DatasetError(path, f"{where}.{f}", "a slice value must be a string, number or boolean")
        out[f] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


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
            or slice fields, a duplicate id, or an empty eval set.
    """
    path = dataset_path(spec, base_dir)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size, spec.model_dump_json(), limit)
    except OSError:
        key = None  # read_records reports it
    if key is not None and key in _LOADED:  # the same file read again in this process (checks, then the run)
        return _LOADED[key]
    cases = _load(spec, path, limit)
    if key is not None:
        _LOADED.clear()
        _LOADED[key] = cases
    return cases


_LOADED: dict[tuple, list[Case]] = {}  # the last eval set loaded, by file identity and mapping
_HASHED: dict[int, tuple[list[Case], str]] = {}  # id(cases) → (cases, their hash)


def release_loaded() -> None:
    """Let go of the eval set kept for the next :func:`load_dataset` (which
    then reads the file again): a large run does, once it holds what it
    still needs of each case (:mod:`llmops_cli.jobs.chunked_run`)."""
    _LOADED.clear()
    _HASHED.clear()


def _load(spec: DatasetSpec, path: Path, limit: int | None) -> list[Case]:
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
        cases.append(Case(cid, inputs, refs, _slices(row, spec.slices, path, f"{where} (id {cid!r})")))
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
    seen = _HASHED.get(id(cases))
    if seen is not None and seen[0] is cases:
        return seen[1]
    digest = sha256_text(canonical_json([c.as_dict() for c in cases]))[:16]
    _HASHED.clear()
    _HASHED[id(cases)] = (cases, digest)
    return digest


def input_text(inputs: dict[str, Any]) -> str:
    """The case's question as the judge sees it: the ``question``/``input``
    field if there is one, else ``key: value`` lines."""
    for k in ("question", "input", "query", "prompt"):
        if isinstance(inputs.get(k), str):
            return inputs[k]
    return "\n".join(f"{k}: {v}" for k, v in inputs.items())
