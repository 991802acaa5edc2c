"""The baseline store: the committed record a candidate is gated against.

A baseline is a run record (``kind: "baseline"``, schema version
:data:`~llmops_cli.record.schema.SCHEMA_VERSION`) holding the config snapshot,
fingerprint, dataset hash, per-case outputs and scores, and aggregates.
It is written atomically and only from a run that completed and whose
judges scored enough cases (``max_unscored_share``), whichever command writes
it. Gating against it is refused when the eval set or a gated judge's model
changed (:func:`check_dataset`, :func:`check_judges`).
"""

from __future__ import annotations

from pathlib import Path

from llmops_cli.config import Config
from llmops_cli.core.errors import BaselineError, RunIncomplete
from llmops_cli.record.compact import FrozenMap, PerCaseModel, SharedFloat, frozen
from llmops_cli.record.schema import RetrievedContext, RunRecord, load_record, save_record


class GatedCase(PerCaseModel):
    """A baseline's case as a gate and its reports read it: output, error,
    scores (None = unscored), corpus statistics and the retrieved chunks'
    ids and scores. Its inputs, references, calls and judge replies are the
    eval set's and the baseline run's traces (the dataset hash vouches for
    the first two): they stay in the file, neither loaded nor validated.
    About 1 KB per case less than a :class:`~llmops_cli.record.schema.CaseRecord`."""

    id: str
    output: str | None = None
    error: str | None = None
    scores: dict[str, SharedFloat | None] = {}
    stats: dict[str, list[SharedFloat]] = {}
    retrieval: RetrievedContext | None = None


class GatedRow:
    """A :class:`GatedCase` as a loaded baseline holds it: the same fields
    in slots, ``scores`` and ``stats`` as read-only mappings
    (:class:`~llmops_cli.record.compact.FrozenMap`) — about 450 bytes less
    per case than the model. Read only."""

    __slots__ = ("id", "output", "error", "scores", "stats", "retrieval")
    id: str
    output: str | None
    error: str | None
    scores: FrozenMap
    stats: FrozenMap
    retrieval: RetrievedContext | None

    def __init__(self, case: GatedCase):
        set_ = object.__setattr__
        set_(self, "id", case.id)
        set_(self, "output", case.output)
        set_(self, "error", case.error)
        set_(self, "scores", frozen(case.scores))
        set_(self, "stats", frozen(case.stats))
        set_(self, "retrieval", case.retrieval)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"a baseline's case is read-only (setting {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GatedRow):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GatedRow({self.id!r})"


class GatedBaseline(RunRecord):
    """A baseline loaded to gate against (:func:`load_baseline` with
    ``gated=True``): every run-level field, each case read as a
    :class:`GatedCase` and held as a :class:`GatedRow`. Read only; never
    written back."""

    cases: list[GatedCase] = []  # type: ignore[assignment]

    @classmethod
    def held(cls, case):
        return GatedRow(case) if isinstance(case, GatedCase) else case


def load_baseline(path: str | Path, *, gated: bool = False) -> RunRecord:
    """Read a baseline file; with ``gated``, as a :class:`GatedBaseline`
    (each case only what a gate reads: 8 MB less peak RSS in a gated
    10,000-case run).

    Raises:
        BaselineError: missing (with a hint to run ``--update-baseline``),
            malformed, of another schema version, or a run record
            (``kind: "run"``) rather than a baseline (key ``kind``).
    """
    path = Path(path)
    if not path.exists():
        raise BaselineError(path, None, "baseline not found; create it with `llmops eval CONFIG --update-baseline`")
    record = load_record(path, "baseline", GatedBaseline if gated else RunRecord)
    if record.kind != "baseline":
        raise BaselineError(path, "kind", f"is {record.kind!r}: this is a run record, not a baseline; make it the baseline "
                            f"with `llmops baseline update CONFIG --from-run {path}`")
    return record


def check_dataset(baseline: RunRecord, dataset_hash: str, path: str | Path) -> None:
    """Refuse (before any model call) a baseline made on another eval set.

    Raises:
        BaselineError: the hashes differ.
    """
    if baseline.dataset_hash != dataset_hash:
        raise BaselineError(path, "dataset_hash", f"the baseline was made on another eval set ({baseline.dataset_hash} ≠ "
                            f"{dataset_hash}); re-run with --update-baseline to measure this eval set")


def check_judges(baseline: RunRecord, cfg: Config, path: str | Path, allow: bool = False) -> list[str]:
    """Refuse (before any model call) to gate a judge metric against a
    baseline judged by another model: scores from two judges are not
    comparable. Checked for every judge of ``cfg`` the gate compares (those
    in ``gate.metrics``, or all of them when it names none) that the baseline
    scored: its ``metrics[<judge>].info["model"]`` against the judge's
    effective model now (:meth:`Config.judge_target`).

    Args:
        allow: gate anyway (``--allow-judge-change``); the changes are
            returned instead of raised.

    Returns:
        One note per changed judge, e.g. ``"correctness: judge changed
        openai/a → openai/b"``; ``[]`` when none changed.

    Raises:
        BaselineError: key ``metrics.<judge>``, naming both models (unless
            ``allow``).
    """
    gated = set(cfg.gate.metrics) or set(cfg.all_metrics)
    notes = []
    for name in cfg.judges:
        summary = baseline.metrics.get(name)
        if name not in gated or summary is None or not summary.info.get("judge"):
            continue
        old, new = summary.info.get("model"), cfg.judge_target(name)[0]
        if not old or old == new:
            continue
        if not allow:
            raise BaselineError(path, f"metrics.{name}", f"the baseline was judged by {old}, this config judges with "
                                f"{new}; scores from two judges are not comparable: re-measure the baseline "
                                "(--update-baseline), or pass --allow-judge-change to gate anyway")
        notes.append(f"{name}: judge changed {old} → {new}")
    return notes


def unscored_judges(record: RunRecord, max_unscored_share: float) -> list[tuple[str, str]]:
    """``(judge, line)`` for every judge of ``record`` that left more than
    ``max_unscored_share`` (0–1) of its cases unscored, the line naming the
    counts."""
    out = []
    for name, m in record.metrics.items():
        total = m.n_scored + m.n_unscored
        if m.info.get("judge") and total and m.n_unscored / total > max_unscored_share:
            out.append((name, f"{name}: {m.n_unscored} of {total} cases unscored by the judge "
                              f"(limit max_unscored_share {max_unscored_share:.0%}); see the run record for its replies"))
    return out


def check_unscored(record: RunRecord, max_unscored_share: float) -> None:
    """Refuse a run in which a judge left more than ``max_unscored_share``
    (0–1) of its cases unscored: it can neither pass the gate nor become a
    baseline.

    Raises:
        RunIncomplete: exit 3, naming the judge and the counts.
    """
    bad = unscored_judges(record, max_unscored_share)
    if bad:
        raise RunIncomplete(bad[0][1])


def check_baseline(record: RunRecord, path: str | Path, *, max_unscored_share: float) -> None:
    """Refuse ``record`` as a baseline as :func:`write_baseline` refuses it;
    ``path`` names it in errors.

    Raises:
        BaselineError, RunIncomplete: see :func:`write_baseline`.
    """
    if record.status != "complete":
        raise BaselineError(path, None, f"refusing to write a baseline from a run with status {record.status!r}")
    if record.shard is not None:
        raise BaselineError(path, None, f"refusing to write a baseline from shard {record.shard.index}/"
                            f"{record.shard.count} of a run; merge the shards first (llmops merge)")
    if record.sequential is not None:
        raise BaselineError(path, None, f"refusing to write a baseline from a sequential run: it answered "
                            f"{record.sequential.answered} of {record.sequential.total} cases (run without "
                            "--sequential / gate.sequential to answer every case)")
    check_unscored(record, max_unscored_share)


def make_baseline(record: RunRecord, path: str | Path, *, max_unscored_share: float) -> RunRecord:
    """``record`` as a baseline (:meth:`RunRecord.as_baseline`, a copy
    without the bulky traces), refused as :func:`write_baseline` refuses it.

    Raises:
        BaselineError, RunIncomplete: see :func:`write_baseline`.
    """
    check_baseline(record, path, max_unscored_share=max_unscored_share)
    return record.as_baseline()


def write_baseline(record: RunRecord, path: str | Path, *, max_unscored_share: float) -> Path:
    """Write ``record`` as the baseline at ``path`` (atomically), without
    the bulky traces (:meth:`RunRecord.as_baseline`).

    Args:
        max_unscored_share: the config's limit (0–1) on a judge's unscored
            cases (see :func:`check_unscored`).

    Raises:
        BaselineError: the record did not complete (it would never be a fair
            baseline), holds one shard of a run (``--shard``; merge the
            shards first) or only the cases a sequential run needed;
            nothing is written.
        RunIncomplete: a judge left too many cases unscored (exit 3);
            nothing is written.
    """
    check_baseline(record, path, max_unscored_share=max_unscored_share)
    return save_record(record, path, as_baseline=True)


def promote_run(cfg: Config, run_path: str | Path) -> Path:
    """Write an existing run record as ``cfg``'s baseline.

    Raises:
        BaselineError: unreadable record, it was made on another eval set
            than ``cfg``'s, or it did not complete.
        RunIncomplete: a judge left more than ``cfg.max_unscored_share`` of
            its cases unscored (exit 3).
    """
    from llmops_cli.plan.requests import make_plan

    record = load_record(run_path)
    check_dataset(record, make_plan(cfg, with_prompts=False).dataset_hash, run_path)
    return write_baseline(record, cfg.baseline_path, max_unscored_share=cfg.max_unscored_share)
