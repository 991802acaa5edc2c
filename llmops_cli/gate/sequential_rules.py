"""The sequential gate (``gate.sequential``, ``eval --sequential``): pay only
for the cases that decide.

**The rule.** The eval set's cases are answered in a seeded random order
(``gate.seed``), in waves. After each wave, every gated metric's paired
deltas (candidate − baseline, the baseline's per-case scores being known; a
failed candidate case counts as the worst value, as in the fixed-n gate)
update an anytime-valid confidence sequence (:mod:`llmops_cli.gate.sequential`:
Waudby-Smith & Ramdas's betting sequence at the gate's confidence, the
family split across the gated metrics by Bonferroni). A metric is decided
*regressed* when its sequence lies wholly below ``−max_drop``, and *within
the rule* when wholly above. The run stops calling the model once every
gated metric is decided, or — ``stop: first_regression``, the default — as
soon as one is decided regressed (the gate exits 1 whatever the rest say).
Because the sequence holds at every look at once, stopping on what it shows
keeps the gate's promise: an unchanged configuration is declared regressed
with probability at most (1 − confidence)/2, whenever the run stops.

**Only case means.** The sequence needs each case's score bounded and the
metric to be their mean: exact match, token F1, ROUGE, semantic similarity,
checks, judges and plugin scores (declared by the scorer,
``Scorer.sequential``). Corpus BLEU, latency quantiles, costs, token counts
and perplexity cannot be decided this way: a gated one is refused before any
call (exit 2, naming them); ungated, they are reported over the cases
answered, as information. So are ``gate.slices`` rules, ``gate.cluster`` (a
cluster's cases are not independent draws) and ``require_power`` (a fixed-n
requirement). ``min``/``max`` floors apply, as always, to the candidate's
aggregate over its run — here the cases it answered, which the table says.

**Undecided at the end.** When the eval set runs out first, the verdict is
the same sequence's at n = N: a metric still undecided was *not shown* to
fall beyond ``max_drop``, so in ``paired`` mode it passes (exit 0), exactly
as the fixed-n paired gate passes a metric whose interval straddles the
margin; in ``strict`` mode it is ``unproven`` (exit 1). Either way the error
the mode controls stays controlled, because the sequence covers at every n,
N included; no fixed-n test is added at the end (that second chance would
raise the false-alarm rate above the stated level). What the sequence costs
is power: at n = N it is wider than the fixed-n interval (see the
benchmark, ``benchmarks/sequential.py``).

**Why not cached answers first.** Answering the cached cases first would be
free, but it would make the order depend on which cases happen to be
cached — the first 50 of the file after a ``--limit 50`` run, or the cases a
previous run of another candidate answered — and those can differ
systematically from the rest (easier questions first, one paragraph's
questions). The sequence is valid only when each next case is a fresh random
draw given everything seen, so the order is the seeded shuffle alone, decided
before any answer is seen; cached answers are still free when their turn
comes. (Cases whose answers are cached *because this very order* put them
first in an earlier run are the same prefix again: no bias, and no cost.)

**Records.** A sequential run's record holds only the cases it answered and
a ``sequential`` block (:class:`~llmops_cli.record.SequentialInfo`): the
order, how many were answered, the looks, each metric's sequence at the stop.
The other cases are *not needed* — never called, never failures, never in a
baseline: a sequential record cannot become one, and ``--update-baseline``
answers every case (``--sequential`` with it is refused, exit 2). ``llmops
gate`` on such a record replays the sequences from the recorded order and
looks and gives the same verdict (:func:`compare_sequential`). ``--shard``
with ``--sequential`` is refused (exit 2): the stop needs the whole
sequence, and a shard is not gated; the shards of a run whose config says
``gate.sequential`` answer every case, and their merged record is gated by
the fixed-n rule, which is valid for a run that answered everything.
"""

from __future__ import annotations

from typing import Any

from llmops_cli.gate import pairing
from llmops_cli.gate.comparison import Comparison, MetricComparison
from llmops_cli.config import Gate
from llmops_cli.config.measure import Sequential
from llmops_cli.core.errors import ConfigError, InputError
from llmops_cli.record.schema import CaseRecord, RunRecord, SequentialInfo
from llmops_cli.measure.scorers import SCORERS
from llmops_cli.gate.sequential import MetricSequence, metric_alpha


def is_case_mean(metric: str, judges=(), checks=()) -> bool:
    """Whether ``metric`` is a per-case mean of a bounded score the
    sequential gate can decide: a scorer that declares it
    (``Scorer.sequential``), a judge or a check (0–1 means)."""
    sc = SCORERS.get(metric)
    if sc is not None:
        return sc.sequential
    return metric in judges or metric in checks


def check_config(cfg, path=None) -> None:
    """Refuse, before any model call, what the sequential gate cannot decide
    (see the module docstring).

    Raises:
        ConfigError: naming ``gate.sequential``, ``gate.metrics.<m>``,
            ``gate.slices``, ``gate.cluster`` or ``gate.require_power`` (exit 2)."""
    where = path or cfg.path or "<config>"
    gate = cfg.gate
    if gate.mode == "plain":
        raise ConfigError(where, "gate.sequential", "needs gate.mode paired or strict (plain compares point estimates, "
                          "which cannot be stopped early)")
    if not gate.metrics:
        raise ConfigError(where, "gate.sequential", "no gated metric to decide: give gate.metrics")
    refused = [m for m in gate.metrics if not is_case_mean(m, cfg.judges, cfg.checks)]
    if refused:
        raise ConfigError(where, f"gate.metrics.{refused[0]}",
                          f"the sequential gate decides only per-case means of bounded scores; "
                          f"{', '.join(refused)} {'is' if len(refused) == 1 else 'are'} not (corpus BLEU, quantiles, "
                          "costs, times, tokens, perplexity): drop the rule or gate without gate.sequential")
    no_margin = [m for m, rule in gate.metrics.items() if rule.max_drop is None]
    if no_margin:
        raise ConfigError(where, f"gate.metrics.{no_margin[0]}", "the sequential gate needs a max_drop on every gated "
                          f"metric (a floor alone cannot be decided case by case): {', '.join(no_margin)}")
    if gate.slices:
        raise ConfigError(where, "gate.slices", "per-slice rules are not decided by the sequential gate; drop them or "
                          "gate without gate.sequential")
    if gate.cluster:
        raise ConfigError(where, "gate.cluster", "the sequential gate needs independent cases; with clusters, gate "
                          "without gate.sequential")
    if gate.require_power is not None or any(r.require_power for r in gate.metrics.values()):
        raise ConfigError(where, "gate.require_power", "a fixed-n power requirement; the sequential gate answers cases "
                          "until it is sure: drop one of the two")


def check_options(opts) -> None:
    """``--sequential`` with an option it cannot take.

    Raises:
        InputError: with ``--update-baseline``/``--from-run`` (a baseline
            needs every case), ``--shard`` (a shard is not gated and the stop
            needs the whole sequence), ``--outputs`` (no model call to save)
            or a run record to gate (exit 2)."""
    if not getattr(opts, "sequential", False):
        return
    for flag, given in (("--update-baseline", opts.update_baseline or opts.from_run), ("--shard", opts.shard),
                        ("--outputs", opts.outputs), ("a run record", opts.candidate)):
        if given:
            why = {"--update-baseline": "a baseline needs every case", "--shard": "a shard is not gated, and the stop "
                   "needs the whole sequence", "--outputs": "scoring outputs calls no model to save",
                   "a run record": "it was answered already"}[flag]
            raise InputError(None, "--sequential", f"not with {flag}: {why}")


class SequentialGate:
    """The sequences of every gated metric of one sequential run.

    Args:
        gate: the gate settings (``gate.metrics`` with a ``max_drop`` each;
            ``confidence``, ``correction``; ``sequential`` or the record's).
        baseline: the baseline, its per-case scores known.
        order: every case id in the order they are to be answered.
        settings: stop and population (default: ``gate.sequential`` or the
            defaults).
        want_intervals: False skips computing the sequence's interval when
            a metric is decided (simulations that read decisions only).
    """

    def __init__(self, gate: Gate, baseline: RunRecord, order: list[str], settings: Sequential | None = None,
                 want_intervals: bool = True):
        chosen = settings or gate.sequential
        self.settings: Sequential = chosen if isinstance(chosen, Sequential) else Sequential()  # true → defaults
        self.gate = gate
        self.order = order
        self.total = len(order)
        self.bscores = {c.id: c.scores for c in baseline.cases}
        alpha = metric_alpha(gate.confidence, len(gate.metrics), gate.correction)
        self.seqs: dict[str, MetricSequence] = {}
        for m, rule in gate.metrics.items():
            paired = sum(self.bscores.get(cid, {}).get(m) is not None for cid in order)  # cases that can pair
            self.seqs[m] = MetricSequence(m, rule.max_drop or 0.0, alpha, pairing.scale_of(m),
                                          population=paired if self.settings.population == "eval_set" else None,
                                          horizon=max(1, paired), want_intervals=want_intervals)
        self.answered = 0
        self.looks: list[int] = []
        self.n_missing = {m: 0 for m in self.seqs}
        self.n_unscored = {m: 0 for m in self.seqs}

    def observe(self, cases: list[CaseRecord]) -> None:
        """A wave of answered, scored cases (in the order answered), then a look.

        Raises:
            InputError: a case's score outside its metric's range (a scorer
                that breaks its declaration)."""
        for m, seq in self.seqs.items():
            deltas = []
            for case in cases:
                b = self.bscores.get(case.id, {}).get(m)
                if b is None:
                    self.n_missing[m] += 1
                    continue
                c = pairing.counted(case, m)
                if c is None:
                    self.n_unscored[m] += 1
                    continue
                deltas.append(c - float(b))
            try:
                seq.update(deltas)
            except ValueError as e:
                raise InputError(None, f"metrics.{m}", f"{e}: its scorer declares scores in [0, {seq.scale:g}]") from None
        self.answered += len(cases)
        self.looks.append(self.answered)

    @property
    def decisions(self) -> dict[str, str]:
        return {m: s.decision for m, s in self.seqs.items()}

    @property
    def done(self) -> bool:
        """True once the rule says stop: every metric decided, or (``stop:
        first_regression``) one decided regressed."""
        d = list(self.decisions.values())
        if self.settings.stop == "first_regression" and "regressed" in d:
            return True
        return all(x != "undecided" for x in d)

    def info(self) -> SequentialInfo:
        """The record's ``sequential`` block, now."""
        return SequentialInfo(order=list(self.order), answered=self.answered, total=self.total, looks=list(self.looks),
                              stop=self.settings.stop, population=self.settings.population, decided=self.done,
                              reason=headline(self.answered, self.total, self.decisions, self.done),
                              metrics={m: s.summary() for m, s in self.seqs.items()})


def headline(answered: int, total: int, decisions: dict[str, str], decided: bool) -> str:
    """``decided after 140 of 810 cases (83% of model calls saved): token_f1
    regressed`` — or ``undecided after …`` when the eval set ran out first."""
    saved = (total - answered) / total if total else 0.0
    groups: dict[str, list[str]] = {}
    for m, d in decisions.items():
        groups.setdefault(d, []).append(m)
    words = {"regressed": "regressed", "within": "within the rule", "undecided": "undecided"}
    parts = [f"{', '.join(ms)} {words[d]}" for d, ms in sorted(groups.items(), key=lambda kv: list(words).index(kv[0]))]
    return (f"{'decided' if decided else 'undecided'} after {answered:,} of {total:,} cases "
            f"({saved:.0%} of model calls saved): {'; '.join(parts)}")


def replay(baseline: RunRecord, candidate: RunRecord, gate: Gate) -> SequentialGate:
    """The sequences of a sequential run, recomputed from its record: the
    answered cases in the recorded order, looked at where the run looked,
    under ``gate``'s rules and the record's stop and population settings.

    Raises:
        InputError: the record's order names a case it does not hold."""
    info = candidate.sequential
    if info is None:
        raise InputError(None, "sequential", "the record is not a sequential run's")
    settings = Sequential(stop=info.stop, population=info.population)
    state = SequentialGate(gate, baseline, info.order, settings)
    cmap = candidate.case_map()
    missing = [cid for cid in info.order[:info.answered] if cid not in cmap]
    if missing:
        raise InputError(None, "sequential.order", f"case {missing[0]!r} was answered but is not in the record")
    start = 0
    for end in info.looks or [info.answered]:
        state.observe([cmap[cid] for cid in info.order[start:end]])
        start = end
    return state


def compare_sequential(baseline: RunRecord, candidate: RunRecord, gate: Gate, **kw: Any) -> Comparison:
    """:func:`llmops_cli.gate.compare` for a sequential run's record: the
    usual comparison over the cases it answered (deltas, case diffs, drift,
    ungated metrics as information), each gated metric's verdict, interval
    and p-value replaced by its sequence's (:func:`replay`), and
    ``Comparison.sequential`` filled. Keyword arguments go to ``compare``.

    Raises:
        what ``compare`` raises; InputError for a record whose order and
        cases disagree, or a gated metric the sequential gate cannot decide."""
    from llmops_cli.gate.rules import compare

    for m in gate.metrics:
        if not is_case_mean(m, *_judges_and_checks(candidate)):
            raise InputError(None, f"gate.metrics.{m}", "a sequential run's record can be gated only on per-case "
                             "means of bounded scores")
    fixed = gate.model_copy(update={"slices": {}, "require_power": None})
    cmp = compare(baseline, candidate, fixed, **kw)
    state = replay(baseline, candidate, gate)
    info = candidate.sequential
    assert info is not None  # replay() refused a record without it
    k = len(state.seqs)
    for res in cmp.metrics:
        seq = state.seqs.get(res.metric)
        if seq is not None:
            _apply(res, seq, gate, k, info.total)
    not_needed = set(info.not_needed)
    cmp.only_baseline = [cid for cid in cmp.only_baseline if cid not in not_needed]
    decided = state.done
    cmp.sequential = {
        "answered": info.answered, "total": info.total, "not_needed": info.not_needed,
        "saved_share": (info.total - info.answered) / info.total if info.total else 0.0,
        "decided": decided, "stop": info.stop, "population": info.population, "looks": len(info.looks),
        "headline": headline(info.answered, info.total, state.decisions, decided),
        "metrics": {m: s.summary() for m, s in state.seqs.items()},
    }
    return cmp


def _judges_and_checks(record: RunRecord) -> tuple[set[str], set[str]]:
    judges = {m for m, s in record.metrics.items() if s.info.get("judge")}
    checks = {m for m, s in record.metrics.items() if s.info.get("check")}
    return judges, checks


def _apply(res: MetricComparison, seq: MetricSequence, gate: Gate, k: int, total: int) -> None:
    """``res``'s verdict, interval and p-value from its sequence."""
    lo, hi = seq.decided_interval or seq.interval()
    res.ci_low, res.ci_high = lo, hi
    res.raw_ci_low, res.raw_ci_high = lo, hi
    res.ci_confidence = 1 - seq.alpha
    res.p_test = seq.p_regressed()
    res.p_adjusted = min(1.0, res.p_test * k) if gate.correction != "none" else res.p_test
    res.alpha_one_sided = seq.alpha / 2
    res.mde, res.power_warning, res.power_required, res.cases_needed = None, "", False, None
    res.rule = res.rule.replace(" (CI, strict)", "").replace(" (CI)", "") + " (sequence)"
    at = seq.decided_at or seq.n
    res.notes.append(f"anytime-valid sequence after {at:,} of {total:,} cases")
    if res.verdict in ("unscored",):
        return
    if res.verdict in ("below min", "above max"):
        res.reason += f" (over the {res.n:,} cases answered)"
        return
    bound = f"-{seq.max_drop:g}"
    if seq.decision == "regressed":
        p = res.p_adjusted
        res.verdict = "regressed"
        res.reason = (f"sequence upper bound {hi:+.4g} < {bound} after {at:,} of {total:,} cases "
                      f"(anytime p {'< 0.001' if p < 0.001 else format(p, '.3g')})")
    elif seq.decision == "within":
        res.verdict = "improved" if lo > 0 else "pass"
        res.reason = f"sequence lower bound {lo:+.4g} > {bound} after {at:,} of {total:,} cases"
    elif gate.mode == "strict":
        res.verdict = "unproven"
        res.reason = (f"strict: undecided after {seq.n:,} of {total:,} cases (sequence [{lo:+.4g}, {hi:+.4g}]), "
                      "so a drop beyond the margin is not ruled out")
    else:
        res.verdict = "pass"
        res.reason = (f"undecided after {seq.n:,} of {total:,} cases (sequence [{lo:+.4g}, {hi:+.4g}]): not shown to "
                      f"fall beyond {bound}")
