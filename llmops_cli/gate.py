"""The gate: compare a candidate run with the baseline, metric by metric.

**Every case counts.** Cases are paired by id (:mod:`llmops_cli.pairing`):
a case the candidate failed counts as the metric's worst value — never
silently dropped. What the comparison says is in :mod:`llmops_cli.comparison`;
the exit code it leads to, in :mod:`llmops_cli.outcome`.

**Intervals.** Each metric's delta (candidate − baseline) gets a standard
error from a seeded paired bootstrap (:mod:`llmops_cli.stats`), cases — or
whole clusters with ``gate.cluster`` — resampled with replacement; the
interval is delta ± z·SE (measured to keep its level where BCa and
percentile intervals over-alarm for BLEU; see the README).

**Rules.** Mode ``paired``: a metric *regresses* when its interval lies
wholly below ``-max_drop``, a one-sided test at level (1 − confidence)/2.
The tests of all gated metrics form one family corrected with Holm's
step-down procedure (Holm 1979; ``gate.correction: holm``, the default), so
that an unchanged configuration fails with probability at most
(1 − confidence)/2 however many metrics are gated; the interval shown is
the one the corrected test uses. Mode ``strict`` (non-inferiority): a metric
passes only when its interval's lower bound lies above ``-max_drop``; the
gate passes only when every metric does, an intersection–union test whose
level needs no correction (Berger 1982). Mode ``plain`` compares point
estimates. In every mode the candidate's aggregate over its *whole* run
must not fall below ``min``.

**Power.** For each gated metric the MDE is the smallest true drop that
exits 1 with 80% probability under the actual rule:
``max_drop + (z₁₋α₁ + z₀.₈)·SE`` with α₁ the one-sided level after the
Bonferroni bound of Holm's first step (a guarantee, since Holm rejects at
least what Bonferroni does). A metric that cannot vary has no MDE ("cannot
detect").
"""

from __future__ import annotations

import math
from typing import Any

from . import pairing, stats
from .cache import memoised
from .comparison import Comparison, MetricComparison
from .config import Gate, GateRule
from .errors import BaselineError, InputError
from .fingerprint import config_diff
from .record import RunRecord

GATE_VERSION = 2  # bump when the bootstrap changes: memoised intervals are keyed by it
TARGET_POWER = 0.8


def _rule_text(rule: GateRule | None, mode: str) -> str:
    if rule is None:
        return "—"
    parts = []
    if rule.max_drop is not None:
        parts.append(f"drop ≤ {rule.max_drop:g}" + {"paired": " (CI)", "strict": " (CI, strict)"}.get(mode, ""))
    if rule.min is not None:
        parts.append(f"≥ {rule.min:g}")
    return ", ".join(parts) or "—"


# -- the comparison ------------------------------------------------------------------------

def compare(baseline: RunRecord, candidate: RunRecord, gate: Gate, *, metrics: list[str] | None = None,
            top: int = 10, baseline_path: str = "baseline", check_dataset: bool = True,
            max_unscored_share: float | None = None, memo=None) -> Comparison:
    """Compare ``candidate`` with ``baseline`` under the ``gate`` rules.

    Args:
        baseline, candidate: run records (the baseline has ``kind: baseline``).
        gate: gate settings and per-metric rules (``Config.gate``).
        metrics: metrics to compare (default: the gated ones, else all that
            both runs scored).
        top: how many most-changed cases to return.
        check_dataset: refuse records made on different eval sets.
        max_unscored_share: a judge metric with a larger share (0–1) of
            unscored candidate cases gets verdict ``unscored`` (the run cannot
            pass).
        memo: a :class:`~llmops_cli.cache.Cache` to memoise each
            metric's bootstrap (keyed by the paired scores, statistics,
            clusters, resamples and seed) and the Holm correction in, or
            ``None``.

    Raises:
        BaselineError: the dataset hashes differ (exit 2), or a gated metric
            is missing from the baseline.
        InputError: ``gate.cluster`` names a field the cases do not have.
    """
    if check_dataset:
        from .baseline import check_dataset as _check

        _check(baseline, candidate.dataset_hash, baseline_path)
    names = metrics or list(gate.metrics) or [m for m in candidate.metrics if m in baseline.metrics]
    for m in names:
        if m not in baseline.metrics:
            raise BaselineError(baseline_path, f"metrics.{m}", "the baseline has no scores for this metric; update the baseline")
    bmap, cmap = baseline.case_map(), candidate.case_map()
    common = [cid for cid in cmap if cid in bmap]
    cluster_of = None
    if gate.cluster:
        missing = [cid for cid in common if gate.cluster not in cmap[cid].inputs]
        if missing:
            raise InputError(None, "gate.cluster", f"case {missing[0]!r} has no input field {gate.cluster!r} to cluster by "
                             "(add it to dataset.inputs)")
        cluster_of = {cid: cmap[cid].inputs[gate.cluster] for cid in common}
    counts: dict[int, Any] = {}  # resample draws, shared by the metrics of this comparison only

    def counts_for(units: int):
        if units not in counts:
            counts[units] = stats.resample_counts(units, gate.resamples, gate.seed)
        return counts[units]

    measured = {}
    for m in names:
        p = pairing.pair(m, common, bmap, cmap)
        groups = pairing.groups(p.ids, cluster_of)
        key = [GATE_VERSION, m, p.b, p.c, p.bs, p.cs, p.failed_refs, groups, gate.resamples, gate.seed]
        measured[m] = (p, None if not p.ids else memoised(memo, "bootstrap", key,
                                                         lambda m=m, p=p, g=groups: pairing.measure(m, p, g, counts_for)))
    results, family_size = _verdicts(names, measured, baseline, candidate, gate, max_unscored_share, memo)
    changes = pairing.case_changes(baseline, candidate, names)
    drift = model_drift(baseline, candidate)
    return Comparison(
        mode=gate.mode, confidence=gate.confidence, resamples=gate.resamples, metrics=results,
        changed_cases=changes[:top] if top else changes,
        only_baseline=[cid for cid in bmap if cid not in cmap], only_candidate=[cid for cid in cmap if cid not in bmap],
        config_changes=config_diff(baseline.config, candidate.config),
        baseline_fingerprint=baseline.fingerprint, candidate_fingerprint=candidate.fingerprint,
        cluster=gate.cluster,
        n_improved_cases=sum(ch.delta > 0 for ch in changes), n_worse_cases=sum(ch.delta < 0 for ch in changes),
        correction=gate.correction if gate.mode == "paired" else "none",
        family_size=family_size,
        model_drift=drift, drift_failed=bool(drift) and gate.on_model_drift == "fail",
        environment_changes=_environment_changes(baseline, candidate),
    )


def _unscored_share(candidate: RunRecord, metric: str) -> float:
    """Share (0–1) of the candidate's cases a *judge* left unscored (failed
    cases of reference metrics are bounded by ``max_error_share`` instead)."""
    summ = candidate.metrics.get(metric)
    total = (summ.n_scored + summ.n_unscored) if summ else 0
    return summ.n_unscored / total if summ and total and summ.info.get("judge") else 0.0


def _verdicts(names: list[str], measured: dict, baseline: RunRecord, candidate: RunRecord, gate: Gate,
              max_unscored_share: float | None, memo) -> tuple[list[MetricComparison], int]:
    """Apply the rules: the family of paired tests is corrected together
    (Holm). Returns the comparisons and the size of that family."""
    alpha = 1 - gate.confidence
    half = alpha / 2
    summaries = {m: stats.BootstrapSummary(**d["summary"]) for m, (_, d) in measured.items() if d is not None}
    over_limit = {m for m in names if max_unscored_share is not None and _unscored_share(candidate, m) > max_unscored_share}
    family = [m for m in names if gate.mode == "paired" and m in summaries and m not in over_limit
              and gate.metrics.get(m) is not None and gate.metrics[m].max_drop is not None]
    p_test = {m: summaries[m].p_drop_exceeds(gate.metrics[m].max_drop) for m in family}
    pvals = [p_test[m] for m in family]
    if gate.correction == "holm" and len(family) > 1:
        rej, adj = memoised(memo, "holm", [pvals, half], lambda: list(stats.holm(pvals, half)))
        levels = stats.holm_levels(pvals, half)
    else:
        rej, adj, levels = [p <= half for p in pvals], list(pvals), [half] * len(pvals)
    decided = {m: (r, a, lv) for m, r, a, lv in zip(family, rej, adj, levels)}
    alpha_power = half / len(family) if gate.correction == "holm" and family else half
    results = []
    for m in names:
        p, d = measured[m]
        rule = gate.metrics.get(m)
        res = MetricComparison(m, len(p.ids), None, None, None, None, None, None, None, _rule_text(rule, gate.mode),
                               "info" if rule is None else "pass", pairing.scale_of(m), n_failed=len(p.failed_refs),
                               n_baseline_missing=p.n_missing, n_unscored=p.n_unscored,
                               max_drop=rule.max_drop if rule else None)
        _judge_note(res, baseline, candidate)
        if d is None:
            res.verdict, res.reason = "unscored", "no case scored on both sides"
            results.append(res)
            continue
        s = summaries[m]
        res.baseline, res.candidate, res.delta, res.se = d["baseline"], d["candidate"], s.theta, d["se"]
        res.raw_ci_low, res.raw_ci_high = s.bound(half), s.bound(1 - half)
        res.ci_low, res.ci_high, res.ci_confidence = res.raw_ci_low, res.raw_ci_high, gate.confidence
        res.p_value = s.p_two_sided()
        if m in decided:
            reject, res.p_adjusted, level = decided[m]
            res.p_test = p_test[m]
            res.ci_low, res.ci_high, res.ci_confidence = s.bound(level), s.bound(1 - level), 1 - 2 * level
        res.alpha_one_sided = alpha_power if m in decided else half
        _power(res, d, rule, gate)
        if m in over_limit:
            share = _unscored_share(candidate, m)
            res.verdict = "unscored"
            res.reason = f"{share:.0%} of cases unscored by the judge (limit max_unscored_share {max_unscored_share:.0%})"
        elif rule is not None:
            if rule.min is not None:
                res.candidate_all = pairing.candidate_all(m, candidate)
            if res.candidate_all is not None and res.candidate_all < rule.min:
                res.verdict, res.reason = "below min", f"{res.candidate_all:.4g} < min {rule.min:g} (whole run)"
            elif rule.max_drop is not None:
                _apply_rule(res, rule.max_drop, gate, s, decided.get(m, (False,))[0])
        results.append(res)
    return results, len(family)


def _apply_rule(res: MetricComparison, max_drop: float, gate: Gate, s: stats.BootstrapSummary, reject: bool) -> None:
    if gate.mode == "plain":
        if res.delta < -max_drop:
            res.verdict, res.reason = "regressed", f"delta {res.delta:+.4g} < -{max_drop:g}"
        elif res.delta > 0:
            res.verdict = "improved"
    elif gate.mode == "strict":
        res.p_test = s.p_not_inferior(max_drop)
        if res.raw_ci_low > -max_drop:
            res.verdict = "improved" if res.raw_ci_low > 0 else "pass"
        else:
            res.verdict = "unproven"
            res.reason = (f"strict: CI lower bound {res.raw_ci_low:+.4g} ≤ -{max_drop:g}, so a drop beyond max_drop is not "
                          "ruled out")
    elif reject:
        adj = "Holm-adjusted " if gate.correction == "holm" and res.ci_confidence != gate.confidence else ""
        res.verdict = "regressed"
        res.reason = (f"{adj}CI upper bound {res.ci_high:+.4g} < -{max_drop:g} (p {res.p_adjusted:.3g})")
    elif res.ci_low > 0:  # the interval shown (Holm-adjusted when in the family) lies above 0
        res.verdict = "improved"


def _power(res: MetricComparison, d: dict, rule: GateRule | None, gate: Gate) -> None:
    """MDE under the rule, and the warning when the gate cannot catch the
    drop the user cares about (``require_power``, else twice ``max_drop``)."""
    if d["cannot_detect"]:
        res.mde = None
        if rule is not None and rule.max_drop is not None:
            res.power_required = bool(rule.require_power or gate.require_power) and gate.mode == "paired"
            res.power_warning = (f"{res.metric}: cannot detect any drop — every case scores {res.baseline:.4g} on both sides, "
                                 "so the eval set says nothing about its variance")
        return
    max_drop = rule.max_drop if rule is not None and rule.max_drop is not None else 0.0
    alpha1 = res.alpha_one_sided
    if gate.mode == "strict":
        # a truly unchanged candidate must pass: its interval's lower bound must clear -max_drop
        res.mde = stats.detectable_drop(0.0, res.se, (1 - gate.confidence) / 2, TARGET_POWER)
        if rule is not None and rule.max_drop is not None and rule.max_drop < res.mde:
            p_pass = stats.power(rule.max_drop, 0.0, res.se, (1 - gate.confidence) / 2)
            res.power_warning = (f"{res.metric}: strict mode passes an unchanged candidate only {p_pass:.0%} of the time "
                                 f"(max_drop {rule.max_drop:g} < {res.mde:.3g} needed)")
        return
    req = rule.require_power if rule is not None and rule.require_power else None
    if req is None and gate.require_power is not None:
        req = gate.require_power.model_copy(update={"drop": gate.require_power.drop * res.scale})
    target_power = req.power if req else TARGET_POWER
    res.mde = stats.detectable_drop(max_drop, res.se, alpha1, TARGET_POWER)
    if rule is None or rule.max_drop is None or gate.mode != "paired":
        return
    target = req.drop if req else (2 * max_drop if max_drop > 0 else None)
    if target is None:
        return
    needed = stats.detectable_drop(max_drop, res.se, alpha1, target_power)
    floor = res.baseline - pairing.worst_of(res.metric)
    if needed > target or target > floor:
        res.cases_needed = stats.cases_needed(res.n, max_drop, res.se, alpha1, target, target_power)
        more = (f"; about {res.cases_needed:,} cases would catch it" if res.cases_needed and target <= floor
                else ("; the baseline is too low to fall that far" if target > floor else
                      "; no number of cases can: max_drop is not below it"))
        res.power_warning = (f"{res.metric}: underpowered — catches a drop of {needed:.3g} with {target_power:.0%} "
                             f"probability, not {target:.3g}{more}")
        res.power_required = req is not None


def _judge_note(res: MetricComparison, baseline: RunRecord, candidate: RunRecord) -> None:
    b, c = baseline.metrics.get(res.metric), candidate.metrics.get(res.metric)
    if b and c and b.info.get("judge") and c.info.get("judge") and b.info.get("model") != c.info.get("model"):
        res.notes.append(f"judge changed: {b.info.get('model')} → {c.info.get('model')}")


def model_drift(baseline: RunRecord, candidate: RunRecord) -> list[str]:
    """One line per requested model whose served models (response ``model``
    and ``system_fingerprint``) differ between the two runs; empty when
    either run has no record of them."""
    lines = []
    for field_name, what in (("served", "model"), ("judge_served", "judge")):
        old, new = getattr(baseline, field_name, None) or {}, getattr(candidate, field_name, None) or {}
        for requested in sorted(set(old) & set(new)):
            if set(old[requested]) != set(new[requested]):
                fmt = lambda d: ", ".join(f"{k} ×{n}" for k, n in sorted(d.items()))  # noqa: E731
                lines.append(f"{what} {requested}: baseline served by {fmt(old[requested])}; now by {fmt(new[requested])}")
    return lines


def _environment_changes(baseline: RunRecord, candidate: RunRecord) -> list[str]:
    from .environment import environment_changes

    return environment_changes(baseline.environment, candidate.environment) if candidate.environment else []


def check_before_run(baseline: RunRecord, gate: Gate, metrics: list[str], path: str = "baseline") -> None:
    """What can be refused before any model call, from the baseline alone.

    * every gated metric must be in the baseline;
    * ``require_power`` (paired mode): a metric whose required drop the gate
      certainly cannot catch — ``max_drop`` is not below it, the baseline is
      too low to fall that far, or, for a 0/1 metric, even the smallest
      paired variance such a drop implies (every changed case changes by a
      whole point, all downwards: SE ≥ √(d(1 − d)/n)) leaves the power short
      at the uncorrected level. Where the bound cannot tell, the decision is
      left to the run.

    Raises:
        BaselineError: a gated metric the baseline lacks, or a power
            requirement the baseline shows cannot be met (exit 2).
    """
    for m in gate.metrics:
        if m in metrics and m not in baseline.metrics:
            raise BaselineError(path, f"metrics.{m}", "the baseline has no scores for this gated metric; "
                                "update the baseline (llmops eval CONFIG --update-baseline)")
    if gate.mode != "paired":
        return
    half = (1 - gate.confidence) / 2
    for m, rule in gate.metrics.items():
        req = rule.require_power or (gate.require_power.model_copy(update={"drop": gate.require_power.drop * pairing.scale_of(m)})
                                     if gate.require_power else None)
        if req is None or rule.max_drop is None or m not in baseline.metrics:
            continue
        sc = pairing.scorer_of(m)
        worst = pairing.worst_of(m)
        scores = [c.scores.get(m) for c in baseline.cases if c.scores.get(m) is not None]
        agg = baseline.metrics[m].aggregate
        problem = None
        if rule.max_drop >= req.drop:
            problem = f"max_drop {rule.max_drop:g} is not below the drop it must catch ({req.drop:g})"
        elif agg is not None and agg - worst < req.drop:
            problem = f"the baseline scores {agg:.4g}, too low to fall by {req.drop:g}"
        elif scores and set(scores) <= {0.0, 1.0} and (sc is None or sc.from_stats is None):
            d, n = req.drop, len(scores)
            se_min = math.sqrt(d * (1 - d) / n) if d < 1 else 0.0
            best = stats.power(d, rule.max_drop, se_min, half)
            if best < req.power:
                problem = (f"with {n} cases the gate catches a drop of {d:g} with at most {best:.0%} probability, "
                           f"not {req.power:.0%}; about {stats.cases_needed(n, rule.max_drop, se_min, half, d, req.power):,} "
                           "cases could")
        if problem:
            raise BaselineError(path, f"gate.metrics.{m}.require_power" if rule.require_power else "gate.require_power",
                                f"{m}: {problem}")


