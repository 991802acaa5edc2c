"""The baseline store: the committed record a candidate is gated against.

A baseline is a run record (``kind: "baseline"``, schema version
:data:`~llmops_cli.record.SCHEMA_VERSION`) holding the config snapshot,
fingerprint, dataset hash, per-case outputs and scores, and aggregates.
It is written atomically and only from a run that completed.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .errors import BaselineError
from .record import RunRecord, load_record, save_record


def load_baseline(path: str | Path) -> RunRecord:
    """Read a baseline file.

    Raises:
        BaselineError: missing (with a hint to run ``--update-baseline``),
            malformed, or of another schema version.
    """
    path = Path(path)
    if not path.exists():
        raise BaselineError(path, None, "baseline not found; create it with `llmops eval CONFIG --update-baseline`")
    return load_record(path, "baseline")


def check_dataset(baseline: RunRecord, dataset_hash: str, path: str | Path) -> None:
    """Refuse (before any model call) a baseline made on another eval set.

    Raises:
        BaselineError: the hashes differ.
    """
    if baseline.dataset_hash != dataset_hash:
        raise BaselineError(path, "dataset_hash", f"the baseline was made on another eval set ({baseline.dataset_hash} ≠ "
                            f"{dataset_hash}); re-run with --update-baseline to measure this eval set")


def write_baseline(record: RunRecord, path: str | Path) -> Path:
    """Write ``record`` as the baseline at ``path`` (atomically).

    Raises:
        BaselineError: the record did not complete (it would never be a fair
            baseline); nothing is written.
    """
    if record.status != "complete":
        raise BaselineError(path, None, f"refusing to write a baseline from a run with status {record.status!r}")
    return save_record(record.as_baseline(), path)


def promote_run(cfg: Config, run_path: str | Path) -> Path:
    """Write an existing run record as ``cfg``'s baseline.

    Raises:
        BaselineError: unreadable record, or it was made on another eval set
            than ``cfg``'s.
    """
    from .runner import prepare

    record = load_record(run_path)
    check_dataset(record, prepare(cfg, with_prompts=False).dataset_hash, run_path)
    return write_baseline(record, cfg.baseline_path)
