"""Power analysis of the gate: how large a drop (or, for lower-is-better
metrics, a rise) each rule catches with 80% probability — the MDE,
``margin + (q₁₋α₁ + z_π)·SE``, ``q`` the t quantile (see :mod:`llmops_cli.gate.stats`) — the warning
when that is more than the user cares about, and the ``require_power``
checks that can refuse a run before any model call.
"""

from __future__ import annotations

import math

from llmops_cli.gate import pairing, stats
from llmops_cli.gate.comparison import MetricComparison
from llmops_cli.config import Gate, GateRule
from llmops_cli.core.errors import BaselineError
from llmops_cli.record.schema import RunRecord

TARGET_POWER = 0.8


def assess_power(res: MetricComparison, d: dict, rule: GateRule | None, gate: Gate, margin_: float | None) -> None:
    """Fill ``res``'s MDE under the rule (metric units), and the warning when
    the gate cannot catch the drop (for lower-is-better metrics: the rise)
    the user cares about (``require_power``, else twice the margin).

    Args:
        res: the metric's comparison, its SE and one-sided level set.
        d: its memoised measurement (``cannot_detect`` when no case varies).
        rule: its gate rule, or None; ``margin_``: the allowed worsening in
            metric units (:func:`llmops_cli.gate.rules.margin`), or None."""
    word = "drop" if res.higher_is_better else "rise"
    if d["cannot_detect"]:
        res.mde = None
        if margin_ is not None:
            assert rule is not None  # a margin comes from a rule (rules.margin)
            res.power_required = bool(rule.require_power or gate.require_power) and gate.mode == "paired"
            res.power_warning = (f"{res.metric}: power unknown — every case scores {res.baseline:.4g} on both sides, so "
                                 f"the eval set says nothing about the variance of a {word} (a real {word} would show as "
                                 "variance and can still be caught)")
        return
    max_drop = margin_ if margin_ is not None else 0.0
    alpha1 = res.alpha_one_sided
    assert res.se is not None and alpha1 is not None and res.baseline is not None  # set from the measurement first
    if gate.mode == "strict":
        # a truly unchanged candidate must pass: its interval's lower bound must clear -max_drop
        res.mde = stats.detectable_drop(0.0, res.se, (1 - gate.confidence) / 2, TARGET_POWER, res.df)
        if margin_ is not None and margin_ < res.mde:
            p_pass = stats.power(margin_, 0.0, res.se, (1 - gate.confidence) / 2, res.df)
            res.power_warning = (f"{res.metric}: strict mode passes an unchanged candidate only {p_pass:.0%} of the time "
                                 f"({'max_drop' if res.higher_is_better else 'margin'} {margin_:.4g} < {res.mde:.3g} needed)")
        return
    req = rule.require_power if rule is not None and rule.require_power else None
    if req is None and gate.require_power is not None and res.higher_is_better:  # a 0–1 drop has no meaning for costs
        req = gate.require_power.model_copy(update={"drop": gate.require_power.drop * res.scale})
    target_power = req.power if req else TARGET_POWER
    res.mde = stats.detectable_drop(max_drop, res.se, alpha1, TARGET_POWER, res.df)
    if margin_ is None or gate.mode != "paired":
        return
    target = req.drop if req else (2 * max_drop if max_drop > 0 else None)
    if target is None:
        return
    needed = stats.detectable_drop(max_drop, res.se, alpha1, target_power, res.df)
    worst = pairing.worst_of(res.metric)
    floor = res.baseline - worst if worst is not None else math.inf  # how far it can fall; a cost can rise without end
    if needed > target or target > floor:
        res.cases_needed = stats.cases_needed(res.n, max_drop, res.se, alpha1, target, target_power)
        more = (f"; about {res.cases_needed:,} cases would catch it" if res.cases_needed and target <= floor
                else ("; the baseline is too low to fall that far" if target > floor else
                      "; no number of cases can: max_drop is not below it"))
        res.power_warning = (f"{res.metric}: underpowered — catches a {word} of {needed:.3g} with {target_power:.0%} "
                             f"probability, not {target:.3g}{more}")
        res.power_required = req is not None


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
        assert worst is not None  # max_drop is set: a higher-is-better metric (measure.prepare), which has a worst value
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


