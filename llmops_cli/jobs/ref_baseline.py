"""Base versus head: the baseline measured at a git ref
(``llmops eval CONFIG --baseline-ref REF``).

Instead of a committed baseline file, the gate compares the working tree
with the same config *as it is at REF* (e.g. ``origin/main``): the config
and every file it names — templates, eval set, corpus, python checks, JSON
schemas, also outside the config's folder — are read from REF's tree,
checked out privately (:class:`~llmops_cli.jobs.gitref.Checkout`); that
configuration runs first (through the same answer cache: cache keys hold
the request, never a path, so what both sides ask alike is answered once)
and its run becomes the baseline, in memory, exactly as
:func:`~llmops_cli.gate.baseline.make_baseline` makes one. The working tree's
gate rules decide.

REF's code runs: its python checks are imported and called, and its
templates rendered (in the same sandbox as the working tree's,
:mod:`llmops_cli.plan.prompt`). REF must be a commit one would check out and run
oneself.

:func:`prepare_ref` does every check before any model call; the run itself
is :meth:`RefBaseline.measure`. With ``--allow-dataset-change`` an eval set
that differs at REF is compared on the cases both hold unchanged (same id,
inputs and references); added, removed and changed cases are counted in a
note and listed as unpaired (:class:`DatasetChange`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from llmops_cli.jobs import gitref
from llmops_cli.core.errors import GitError, InputError, Interrupted, RunIncomplete

if TYPE_CHECKING:
    from llmops_cli.config import Config
    from llmops_cli.record.schema import RunRecord

OPTION = "--baseline-ref"


def check_options(opts) -> None:
    """Refuse options that cannot go with ``opts.baseline_ref`` (an
    :class:`~llmops_cli.jobs.evaluate.EvalOptions`), or
    ``allow_dataset_change`` without it.

    Raises:
        InputError: one line naming both options."""
    if not opts.baseline_ref:
        if opts.allow_dataset_change:
            raise InputError(None, "--allow-dataset-change", "only goes with --baseline-ref")
        return
    clashes = {"--baseline": opts.baseline, "--update-baseline": opts.update_baseline, "--from-run": opts.from_run,
               "--shard": opts.shard, "--outputs": opts.outputs, "--candidate": opts.candidate}
    for name, given in clashes.items():
        if given:
            raise InputError(None, OPTION, f"cannot go with {name}: the baseline is measured at the git ref")


@dataclass
class DatasetChange:
    """How the eval set at the working tree differs from REF's, by case id:
    ``added`` (only now), ``removed`` (only at REF), ``changed`` (same id,
    other inputs or references); ``paired``: cases held unchanged by both,
    the only ones compared."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    paired: int

    @classmethod
    def of(cls, at_ref, now) -> "DatasetChange":
        """From the :class:`~llmops_cli.plan.dataset.Case` lists at REF and now."""
        old = {c.id: c.as_dict() for c in at_ref}
        new = {c.id: c.as_dict() for c in now}
        changed = [i for i in new if i in old and old[i] != new[i]]
        return cls([i for i in new if i not in old], [i for i in old if i not in new], changed,
                   sum(i in old and old[i] == new[i] for i in new))

    def note(self, ref: str) -> str:
        return (f"eval set changed since {ref} (--allow-dataset-change): {self.paired} cases compared; "
                f"{len(self.added)} added, {len(self.changed)} changed and {len(self.removed)} removed are not compared")


class RefBaseline:
    """The config as it is at git ref ``ref``, checked and ready to run from
    its private checkout. ``config``: REF's :class:`~llmops_cli.config.Config`;
    ``label``: ``REF:path/of/llmops.yaml`` (how messages name it);
    ``commits``: ``{"baseline": "REF 1a2b3c4", "candidate": "working tree at
    5d6e7f8"}`` (or ``"5d6e7f8 + uncommitted changes"`` when a file the run
    reads differs from HEAD); ``change``: the eval set's change (None when
    equal); ``notes``: lines for the report (one more once measured: where
    REF's run record is and what it called); ``record_path``: REF's run
    record once measured. Call :meth:`close` when done (idempotent)."""

    def __init__(self, ref: str, checkout: gitref.Checkout, label: str):
        self.ref, self.checkout, self.label = ref, checkout, label
        self.config: Config | None = None  # set by prepare_ref
        self.commits: dict[str, str] = {}
        self.change: DatasetChange | None = None
        self.notes: list[str] = []
        self.record_path: Path | None = None

    def measure(self, run: Callable[[], RunRecord], folder: Path):
        """Run REF's config (``run()`` returns its
        :class:`~llmops_cli.record.schema.RunRecord`), save the record in
        ``folder`` and return it as the baseline — without the cases that
        changed in the eval set. The checkout is removed afterwards.

        Raises:
            RunIncomplete: REF's run did not complete, or a judge left too
                many of its cases unscored (exit 3; the partial record is
                saved and named).
            Interrupted: Ctrl-C during REF's run (the partial record is saved).
            InputError: bad input met while running (named at REF)."""
        from llmops_cli.gate.baseline import make_baseline
        from llmops_cli.record.schema import save_record

        try:
            try:
                record = run()
            except (RunIncomplete, Interrupted) as err:
                partial = self._save(err.record, folder)
                where = f"; its partial run record: {partial}" if partial else ""
                raise type(err)(f"the baseline at {self.ref} could not be measured: {err}{where}") from None
            record.config_path = self.label
            self.record_path = save_record(record, folder / f"{record.run_id}.json")
            self.notes.insert(0, f"baseline: {self.label} at {self.commits.get('baseline')}, run record "
                                 f"{self.record_path} ({record.usage.calls} model calls, {record.usage.cache_hits} cached)")
            assert self.config is not None  # measured after prepare_ref set it
            try:
                baseline = make_baseline(record, self.record_path, max_unscored_share=self.config.max_unscored_share)
            except RunIncomplete as err:
                raise RunIncomplete(f"the baseline at {self.ref}: {err}") from None
        except InputError as err:
            raise self._named(err) from None
        finally:
            self.close()
        if self.change is not None and self.change.changed:
            drop = set(self.change.changed)
            baseline.cases = [c for c in baseline.cases if c.id not in drop]
        return baseline

    def _save(self, record, folder: Path) -> Path | None:
        from llmops_cli.core.errors import OutputError
        from llmops_cli.record.schema import save_record

        if record is None:
            return None
        record.config_path = self.label
        try:
            return save_record(record, folder / f"{record.run_id}.json")
        except OutputError:
            return None

    def _named(self, err: InputError) -> InputError:
        """``err`` with the checkout's folder shown as ``REF:`` (one line)."""
        root = str(self.checkout.path) + "/"
        path = err.path.replace(root, f"{self.ref}:") if err.path else None
        return type(err)(path, err.key, err.message.replace(root, f"{self.ref}:"))

    def close(self) -> None:
        self.checkout.close()


def prepare_ref(cfg, opts, memo=None) -> RefBaseline:
    """Check out ``cfg``'s repository at ``opts.baseline_ref``, load the
    config there, and check — before any model call — everything both runs
    need: both eval sets load (the working tree's prompts are rendered too),
    they are equal (or ``opts.allow_dataset_change``), every metric the
    working tree gates is measured at REF, and no gated judge changed model
    (unless ``opts.allow_judge_change``). ``memo``: the cache, for the
    retrieval hits.

    Returns:
        A :class:`RefBaseline` holding a checkout: close it.

    Raises:
        InputError: one line naming the config and the ref: not a git
            repository, git missing, a ref that is no commit, no such config
            at REF, a bad config or eval set at REF, another eval set,
            a gated metric REF does not measure, a changed judge."""
    from llmops_cli.config import load_config
    from llmops_cli.measure.prepare import prepare
    from llmops_cli.plan.requests import make_plan

    ref, path, key = opts.baseline_ref, Path(opts.config or cfg.path), f"{OPTION} {opts.baseline_ref}"
    try:
        repo = gitref.repository(Path(cfg.path).parent)
        commit = gitref.resolve(repo, ref)
        rel = Path(cfg.path).resolve().relative_to(repo).as_posix()
        checkout = gitref.Checkout(repo, commit)
    except GitError as e:
        raise InputError(path, key, e.message) from None
    at = RefBaseline(ref, checkout, f"{ref}:{rel}")
    try:
        sha = gitref.short(repo, commit)
        if not (checkout.path / rel).is_file():
            raise InputError(path, key, f"{ref} ({sha}) has no {rel}: the config did not exist there "
                             "(gate against a baseline file instead)")
        try:
            at.config = prepare(load_config(checkout.path / rel))  # its module:function checks are REF's own (checks._import)
            cases_at_ref = make_plan(at.config, opts.limit, with_prompts=False).cases
        except InputError as e:
            raise at._named(e) from None
        now = make_plan(cfg, opts.limit, memo=memo)  # the working tree's prompts render: no error after REF's run
        change = DatasetChange.of(cases_at_ref, now.cases)
        if change.added or change.removed or change.changed:
            if not opts.allow_dataset_change:
                raise InputError(path, key, f"the eval set differs at {ref} ({len(change.added)} cases added, "
                                 f"{len(change.changed)} changed, {len(change.removed)} removed): pass "
                                 "--allow-dataset-change to compare the cases both hold unchanged")
            at.change = change
            at.notes.append(change.note(ref))
        _check_metrics(cfg, at)
        at.notes += _judge_changes(cfg, at, opts.allow_judge_change)
        at.commits = {"baseline": sha if commit.startswith(ref) else f"{ref} {sha}",
                      "candidate": _working_tree(repo, cfg)}
    except BaseException:
        at.close()
        raise
    return at


def _check_metrics(cfg, at: RefBaseline) -> None:
    """Every metric the working tree's gate rules name is measured at REF."""
    gated = set(cfg.gate.metrics) | {m for rules in cfg.gate.slices.values() for m in rules}
    assert at.config is not None  # set by prepare_ref before this check
    missing = sorted(gated - set(at.config.all_metrics))
    if missing:
        raise InputError(cfg.path, f"gate.metrics.{missing[0]}", f"{at.label} does not measure it, so there is no "
                         "baseline to gate it against; gate it once the change is merged")


def _judge_changes(cfg, at: RefBaseline, allow: bool) -> list[str]:
    """:func:`~llmops_cli.gate.baseline.check_judges` on what REF's judges would
    record (their models), before anything runs."""
    from llmops_cli.gate.baseline import check_judges
    from llmops_cli.record.schema import MetricSummary, RunRecord

    assert at.config is not None  # set by prepare_ref before this check
    judged = RunRecord(metrics={name: MetricSummary(aggregate=None, info={"judge": True,
                                                                          "model": at.config.judge_target(name)[0]})
                                for name in at.config.judges})
    return [f"judge changed: {n} (--allow-judge-change)" for n in check_judges(judged, cfg, at.label, allow=allow)]


def _working_tree(repo: Path, cfg) -> str:
    """``working tree at 5d6e7f8``, or ``5d6e7f8 + uncommitted changes`` when
    a file the run reads differs from HEAD."""
    commit = gitref.head(repo)
    if commit is None:
        return "working tree (no commit yet)"
    sha = gitref.short(repo, commit)
    return f"{sha} + uncommitted changes" if gitref.has_changes(repo, read_files(cfg)) else f"working tree at {sha}"


def read_files(cfg) -> list[Path]:
    """The files a run of ``cfg`` reads: the config, eval set, corpus,
    prompt and judge templates, the checks' JSON schemas and python files
    (:func:`~llmops_cli.measure.prepare.run_inputs`, less the baseline) — and for a
    ``module:function`` check its module's file even when deleted, and its
    package's folder (any file of it may have changed)."""
    from llmops_cli.measure.checks import module_file
    from llmops_cli.measure.prepare import run_inputs

    files = [p for what, p in run_inputs(cfg).items() if p is not None and what != "the baseline"]
    for spec in cfg.checks.values():
        where = (spec.python or "").rpartition(":")[0]
        if where and not where.endswith(".py"):
            file = module_file(spec.python, cfg, existing=False)
            assert file is not None  # existing=False: the path, whether or not the file is there
            files += [file, cfg.base_dir / where.split(".")[0]]
    return files
