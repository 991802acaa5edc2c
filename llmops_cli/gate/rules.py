"""The gate: compare a candidate run with the baseline, metric by metric.

**Every case counts.** Cases are paired by id (:mod:`llmops_cli.gate.pairing`):
a case the candidate failed counts as the metric's worst value — never
silently dropped. What the comparison says is in :mod:`llmops_cli.gate.comparison`;
the exit code it leads to, in :mod:`llmops_cli.gate.outcome`.

**Intervals.** Each metric's delta (candidate − baseline) gets an
unbiased standard error — the analytic paired SE of a per-case mean (CR2
cluster-robust with ``gate.cluster``), or a seeded paired bootstrap's
rescaled by √(u/(u − 1)) for corpus BLEU and quantiles
(:mod:`llmops_cli.gate.pairing`, :mod:`llmops_cli.gate.stats`) — and the interval is
delta ± t·SE with n − 1 (or the clusters') degrees of freedom: measured to
keep its level from 8 cases up (benchmarks/calibration_small.py), where BCa
and percentile intervals over-alarm for BLEU (see the README). Pass/fail
metrics are tested exactly on their discordant pairs
(:mod:`llmops_cli.gate.exact`); intervals are clipped to what a bounded metric
can reach.

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
must not fall below ``min`` (nor rise above ``max``).

**Lower-is-better metrics** (costs, latencies, tokens, perplexity) take
``max_increase`` or ``max_increase_pct`` instead of ``max_drop``: the same
tests on the negated delta. **Slices** (``dataset.slices``) get every
metric compared per value; ``gate.slices`` rules join the Holm family.

**Power.** For each gated metric the MDE is the smallest true drop that
exits 1 with 80% probability under the actual rule:
``max_drop + (q₁₋α₁ + z₀.₈)·SE`` (``q`` the test's t quantile) with α₁ the one-sided level after the
Bonferroni bound of Holm's first step (a guarantee, since Holm rejects at
least what Bonferroni does); see :mod:`llmops_cli.gate.power`. A metric that
does not vary has no MDE (its power is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops_cli.gate import exact, pairing, stats
from llmops_cli.core.cache import memoised
from llmops_cli.gate.comparison import Comparison, MetricComparison
from llmops_cli.record.environment import environment_changes, model_drift
from llmops_cli.config import Gate, GateRule
from llmops_cli.core.errors import BaselineError, InputError
from llmops_cli.core.fingerprint import config_diff
from llmops_cli.record.integrity import check_covers
from llmops_cli.gate.power import assess_power
from llmops_cli.record.schema import RunRecord

GATE_VERSION = 3  # bump when the bootstrap changes: memoised intervals are keyed by it


def _local_memo(memo):
    """The memo the gate's statistics may be kept in: the local SQLite cache
    only. A shared store (Redis) holds answers, never the verdict's numbers:
    whatever is stored there would be read back as the gate's own."""
    from llmops_cli.core.cache.sqlite import Cache

    return memo if isinstance(memo, Cache) else None


def _stat_versions() -> tuple[str, ...]:
    """What memoised statistics depend on besides their inputs: llmops,
    numpy and scipy (read from package metadata, not imported)."""
    from llmops_cli import __version__
    from llmops_cli.record.environment import installed_version

    return (__version__, *(f"{name}=={installed_version(name) or '-'}" for name in ("numpy", "scipy")))


def binary_metrics(baseline: RunRecord, candidate: RunRecord, names: list[str]) -> set[str]:
    """The metrics among ``names`` that declare themselves pass/fail (0/1 per
    case): a scorer registered ``binary`` (``exact_match``) or a check. The
    gate tests them exactly when every paired value is 0 or 1
    (:mod:`llmops_cli.gate.exact`)."""
    out = set()
    for m in names:
        sc = pairing.scorer_of(m)
        info = (candidate.metrics.get(m) or baseline.metrics.get(m))
        if (sc is not None and sc.binary) or (sc is None and info is not None and info.info.get("check")):
            out.add(m)
    return out


def _rule_text(rule: GateRule | None, mode: str) -> str:
    if rule is None:
        return "—"
    parts = []
    how = {"paired": " (CI)", "strict": " (CI, strict)"}.get(mode, "")
    if rule.max_drop is not None:
        parts.append(f"drop ≤ {rule.max_drop:g}{how}")
    if rule.max_increase is not None:
        parts.append(f"rise ≤ {rule.max_increase:g}{how}")
    if rule.max_increase_pct is not None:
        parts.append(f"rise ≤ {rule.max_increase_pct:g}%{how}")
    if rule.min is not None:
        parts.append(f"≥ {rule.min:g}")
    if rule.max is not None:
        parts.append(f"≤ {rule.max:g}")
    return ", ".join(parts) or "—"


def margin(metric: str, rule: GateRule | None, baseline_aggregate: float | None) -> float | None:
    """The largest allowed worsening of ``metric`` in its own units: the
    rule's ``max_drop``, ``max_increase``, or ``max_increase_pct`` percent of
    the baseline's aggregate (its absolute value); None without a margin."""
    if rule is None:
        return None
    if rule.max_increase_pct is not None:
        return None if baseline_aggregate is None else rule.max_increase_pct / 100 * abs(baseline_aggregate)
    return rule.max_drop if rule.max_drop is not None else rule.max_increase


def _better(s: stats.BootstrapSummary, higher: bool) -> stats.BootstrapSummary:
    """The summary oriented so that positive means better: a lower-is-better
    metric's delta is negated (the interval is symmetric, so only the tests
    change), and every rule below reads "a fall beyond the margin"."""
    return s if higher else stats.BootstrapSummary(-s.theta, s.se, s.units, s.df)


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
        memo: a :class:`~llmops_cli.core.cache.Cache` to memoise each
            metric's bootstrap in (keyed by the paired scores, statistics,
            clusters, resamples, seed and the llmops, numpy and scipy
            versions), or ``None``. Only a local (SQLite) cache is used: a
            shared Redis cache never holds the gate's statistics.

    Raises:
        BaselineError: the dataset hashes differ (exit 2), the baseline lacks
            a case its dataset hash covers, or a gated metric is missing
            from the baseline.
        InputError: ``gate.cluster`` names a field the cases do not have.
    """
    if check_dataset:
        from llmops_cli.gate.baseline import check_dataset as _check

        _check(baseline, candidate.dataset_hash, baseline_path)
        check_covers(baseline, candidate, baseline_path)
    names = metrics or list(gate.metrics) or [m for m in candidate.metrics if m in baseline.metrics]
    for m in names:
        if m not in baseline.metrics:
            raise BaselineError(baseline_path, f"metrics.{m}", "the baseline has no scores for this metric; update the baseline")
    bmap, cmap = baseline.case_map(), candidate.case_map()
    common = [cid for cid in cmap if cid in bmap]
    cluster_of = None
    if gate.cluster:
        cluster_of = {}
        for cid in common:  # each case's inputs read once (a spooled case reads them back from disk)
            inputs = cmap[cid].inputs
            if gate.cluster not in inputs:
                raise InputError(None, "gate.cluster", f"case {cid!r} has no input field {gate.cluster!r} to cluster by "
                                 "(add it to dataset.inputs)")
            cluster_of[cid] = inputs[gate.cluster]
    memo = _local_memo(memo)
    binary = binary_metrics(baseline, candidate, names + [m for rules in gate.slices.values() for m in rules])
    counts: dict[int, Any] = {}  # resample draws, shared by the metrics of this comparison only

    def counts_for(units: int):
        if units not in counts:
            counts[units] = stats.resample_counts(units, gate.resamples, gate.seed)
        return counts[units]

    def measure(metric: str, ids: list[str]) -> tuple[pairing.Paired, dict | None]:
        p = pairing.pair(metric, ids, bmap, cmap)
        groups = pairing.groups(p.ids, cluster_of)
        if not p.ids:
            return p, None
        sc = pairing.scorer_of(metric)
        if p.bs is None and (sc is None or sc.quantile is None):  # a per-case mean: analytic, nothing to memoise
            return p, pairing.measure(metric, p, groups, counts_for, metric in binary)
        key = [GATE_VERSION, _stat_versions(), metric, p.b, p.c, p.bs, p.cs, p.failed_refs, groups, gate.resamples,
               gate.seed]
        return p, memoised(memo, "bootstrap", key, lambda: pairing.measure(metric, p, groups, counts_for))

    tests = [_Test(m, None, gate.metrics.get(m), *measure(m, common), common) for m in names]
    for label, ids, rules in slices_of(candidate, common, gate):
        for m in names + [m for m in rules if m not in names]:
            tests.append(_Test(m, label, rules.get(m), *measure(m, ids), ids))
    results, family_size = _verdicts(tests, baseline, candidate, gate, max_unscored_share, memo)
    ranked = pairing.rank_changes(baseline, candidate, names, bmap)
    n_improved, n_worse = pairing.changed_counts(ranked)
    changes = [pairing.as_change(r) for r in (ranked[:top] if top else ranked)]
    del ranked
    drift = model_drift(baseline, candidate)
    return Comparison(
        mode=gate.mode, confidence=gate.confidence, resamples=gate.resamples,
        metrics=[r for r in results if r.slice is None], slices=[r for r in results if r.slice is not None],
        changed_cases=changes,
        only_baseline=[cid for cid in bmap if cid not in cmap], only_candidate=[cid for cid in cmap if cid not in bmap],
        config_changes=config_diff(baseline.config, candidate.config),
        baseline_fingerprint=baseline.fingerprint, candidate_fingerprint=candidate.fingerprint,
        cluster=gate.cluster,
        n_improved_cases=n_improved, n_worse_cases=n_worse,
        correction=gate.correction if gate.mode == "paired" else "none",
        family_size=family_size,
        model_drift=drift, drift_failed=bool(drift) and gate.on_model_drift == "fail",
        environment_changes=environment_changes(baseline, candidate),
    )


def slices_of(candidate: RunRecord, ids: list[str], gate: Gate) -> list[tuple[str, list[str], dict[str, GateRule]]]:
    """Every slice of the cases ``ids`` — ``(label "field=value", its case ids
    in order, the gate rules that target it)`` — for each slice field the
    candidate's cases carry, values in order of first appearance. A slice's
    rules are those of ``field=*`` overridden per metric by ``field=value``.

    Raises:
        InputError: a ``gate.slices`` key names a value no compared case has."""
    cmap = candidate.case_map()
    fields = list(dict.fromkeys(f for cid in ids for f in cmap[cid].slices))
    out, seen = [], set()
    for f in fields:
        values: dict[str, list[str]] = {}
        for cid in ids:
            if f in cmap[cid].slices:
                values.setdefault(cmap[cid].slices[f], []).append(cid)
        for v, members in values.items():
            label = f"{f}={v}"
            seen.add(label)
            out.append((label, members, {**gate.slices.get(f"{f}=*", {}), **gate.slices.get(label, {})}))
    for key in gate.slices:
        field, _, value = key.partition("=")
        if value != "*" and key not in seen and field in fields:
            known = sorted({lbl.partition("=")[2] for lbl, _, _ in out if lbl.startswith(field + "=")})
            raise InputError(None, f"gate.slices.{key}", f"no compared case has {field} = {value!r} "
                             f"(values: {', '.join(known)})")
    return out


@dataclass
class _Test:
    """One comparison the gate makes: ``metric`` over every paired case
    (``slice`` None) or over one slice's, with its rule (None: reported
    only), its pairs and its memoised measurement (None: nothing paired)."""

    metric: str
    slice: str | None
    rule: GateRule | None
    pairs: pairing.Paired
    measured: dict | None
    ids: list[str]


def _unscored_share(candidate: RunRecord, metric: str, pairs: pairing.Paired | None = None) -> float:
    """Share (0–1) of the candidate's cases ``metric`` left unscored though
    they were answered: a judge's unparseable verdicts (over all its cases),
    else the paired cases whose answer the metric could not score —
    perplexity without log-probabilities, similarity without an embedding,
    a plugin that returned None (``pairs``). Failed calls are bounded by
    ``max_error_share`` instead."""
    summ = candidate.metrics.get(metric)
    if summ is not None and summ.info.get("judge"):
        total = summ.n_scored + summ.n_unscored
        return summ.n_unscored / total if total else 0.0
    if pairs is None:
        return 0.0
    total = len(pairs.ids) + pairs.n_unscored
    return pairs.n_unreadable / total if total else 0.0


def _verdicts(tests: list[_Test], baseline: RunRecord, candidate: RunRecord, gate: Gate,
              max_unscored_share: float | None, memo) -> tuple[list[MetricComparison], int]:
    """Apply the rules: the family of paired tests — whole-run and per-slice
    — is corrected together (Holm). Returns the comparisons, in the order of
    ``tests``, and the size of that family."""
    alpha = 1 - gate.confidence
    half = alpha / 2
    summaries = [stats.BootstrapSummary(**t.measured["summary"]) if t.measured is not None else None for t in tests]
    shares = {t.metric: _unscored_share(candidate, t.metric, t.pairs) for t in tests if t.slice is None
              and (t.rule is not None or _unscored_share(candidate, t.metric) > 0)}  # gated, or a judge
    over_limit = {m for m, share in shares.items() if max_unscored_share is not None and share > max_unscored_share}
    margins = [margin(t.metric, t.rule, t.measured["baseline"] if t.measured else None) for t in tests]
    better = [_better(sm, pairing.higher_is_better(t.metric)) if sm else None for t, sm in zip(tests, summaries)]
    # pass/fail metrics: McNemar's exact test (Tango's score test with a margin) on the discordant pairs
    pairs = {i: exact.Discordant(**t.measured["binary"]) for i, t in enumerate(tests)
             if gate.mode == "paired" and t.measured is not None and t.measured.get("binary")
             and margins[i] is not None and pairing.higher_is_better(t.metric)}
    too_few = {i for i, d in pairs.items() if exact.too_few(d, _margin(margins[i]), half)}  # can never fire: out of the family
    family = [i for i, t in enumerate(tests) if gate.mode == "paired" and summaries[i] is not None
              and t.metric not in over_limit and margins[i] is not None and i not in too_few]
    p_test = {i: exact.p_drop_exceeds(pairs[i], _margin(margins[i])) if i in pairs
              else _summary(better[i]).p_drop_exceeds(_margin(margins[i])) for i in family}
    pvals = [p_test[i] for i in family]
    if gate.correction == "holm" and len(family) > 1:
        rej, adj = stats.holm(pvals, half)  # computed, never read from a store
        levels = stats.holm_levels(pvals, half)
    else:
        rej, adj, levels = [p <= half for p in pvals], list(pvals), [half] * len(pvals)
    decided = {i: (r, a, lv) for i, r, a, lv in zip(family, rej, adj, levels)}
    alpha_power = half / len(family) if gate.correction == "holm" and family else half
    results = []
    for i, t in enumerate(tests):
        m, p, d, rule = t.metric, t.pairs, t.measured, t.rule
        res = MetricComparison(m, len(p.ids), None, None, None, None, None, None, None, _rule_text(rule, gate.mode),
                               "info" if rule is None else "pass", pairing.scale_of(m), n_failed=len(p.failed_refs),
                               n_baseline_missing=p.n_missing, n_unscored=p.n_unscored, max_drop=margins[i],
                               higher_is_better=pairing.higher_is_better(m), unit=pairing.unit_of(m),
                               max_increase_pct=rule.max_increase_pct if rule else None, slice=t.slice)
        if t.slice is None:
            _cached_note(res, candidate)
            _judge_note(res, baseline, candidate)
        results.append(res)
        if d is None:
            if t.slice is None or rule is not None:
                res.verdict = "unscored"
            res.reason = "no case scored on both sides"
            continue
        s = summaries[i]
        assert s is not None  # measured (d), so summarised
        res.baseline, res.candidate, res.delta, res.se = d["baseline"], d["candidate"], s.theta, d["se"]
        res.df = s.df
        res.test = _test_name(s, pairs.get(i), margins[i], t.metric, cluster=gate.cluster is not None)
        clip = _reachable(m, res.baseline)
        res.raw_ci_low, res.raw_ci_high = clip(s.bound(half), s.bound(1 - half))
        res.ci_low, res.ci_high, res.ci_confidence = res.raw_ci_low, res.raw_ci_high, gate.confidence
        res.p_value = s.p_two_sided()
        if i in decided:
            reject, res.p_adjusted, level = decided[i]
            res.p_test = p_test[i]
            res.ci_low, res.ci_high = clip(s.bound(level), s.bound(1 - level))
            res.ci_confidence = 1 - 2 * level
        if i in pairs:
            res.discordant = pairs[i].to_dict()
        if i in too_few:
            k = exact.needed(_margin(margins[i]), half, pairs[i].n)
            res.too_few = (f"{pairs[i].changed} case{'s' if pairs[i].changed != 1 else ''} changed: too few to decide at "
                           f"{gate.confidence:.0%}" + (f" (needs at least {k})" if k else ""))
            res.notes.append(res.too_few)
        res.alpha_one_sided = alpha_power if i in decided else half
        assess_power(res, d, rule, gate, margins[i])
        if m in over_limit:
            share = shares[m]
            judged = bool(candidate.metrics.get(m) and candidate.metrics[m].info.get("judge"))
            res.verdict = "unscored"
            res.reason = (f"{share:.0%} of cases unscored by the {'judge' if judged else 'metric'} "
                          f"(limit max_unscored_share {max_unscored_share:.0%})")
        elif rule is not None:
            if rule.min is not None or rule.max is not None:
                res.candidate_all = pairing.candidate_all(m, candidate, None if t.slice is None else t.ids)
            where = "whole run" if t.slice is None else t.slice
            if res.candidate_all is not None and rule.min is not None and res.candidate_all < rule.min:
                res.verdict, res.reason = "below min", f"{res.candidate_all:.4g} < min {rule.min:g} ({where})"
            elif res.candidate_all is not None and rule.max is not None and res.candidate_all > rule.max:
                res.verdict, res.reason = "above max", f"{res.candidate_all:.4g} > max {rule.max:g} ({where})"
            elif (mg := margins[i]) is not None:
                b = better[i]
                assert b is not None  # measured (d), so summarised
                _apply_rule(res, mg, gate, b, decided.get(i, (False,))[0])
    return results, len(family)


def _test_name(s: stats.BootstrapSummary, pairs, margin_: float | None, metric: str, cluster: bool) -> str:
    """Which test decided the metric, in a few words (the table's notes, JSON)."""
    if pairs is not None:
        return "McNemar exact" if not margin_ else "Tango score (non-inferiority)"
    how = "bootstrap SE" if pairing.scorer_of(metric) is not None and (
        pairing.scorer_of(metric).from_stats is not None or pairing.scorer_of(metric).quantile is not None) else \
        ("cluster-robust SE (CR2)" if cluster else "paired SE")
    return f"t, {s.df:g} df, {how}" if s.df else f"normal, {how}"


def _reachable(metric: str, baseline_aggregate: float | None):
    """A function clipping an interval ``(low, high)`` of the delta to what a
    bounded metric can reach from this baseline: ``[bottom − baseline, top −
    baseline]`` for 0–1 (0–100) scores; unbounded metrics (costs, times,
    perplexity) unchanged. Clipping never changes a verdict: a clipped upper
    end is still ≥ 0, a clipped lower end (strict mode) says rightly that a
    baseline below the margin cannot fall further than it."""
    worst = pairing.worst_of(metric)
    if worst is None or baseline_aggregate is None or not pairing.higher_is_better(metric):
        return lambda lo, hi: (lo, hi)
    floor, ceiling = worst - baseline_aggregate, pairing.scale_of(metric) - baseline_aggregate
    return lambda lo, hi: (min(max(lo, floor), ceiling), max(min(hi, ceiling), floor))


def _apply_rule(res: MetricComparison, max_drop: float, gate: Gate, s: stats.BootstrapSummary, reject: bool) -> None:
    """The verdict under ``max_drop`` (the margin in the metric's units), with
    ``s`` oriented so that positive is better (:func:`_better`); the reasons
    quote the interval as shown, in the metric's own direction."""
    up = not res.higher_is_better  # a rise is the bad direction
    assert res.delta is not None and res.ci_low is not None and res.ci_high is not None  # set from the measurement first
    bad_bound = res.ci_low if up else res.ci_high  # the end of the shown interval nearest to "better"
    raw_good = res.raw_ci_high if up else res.raw_ci_low  # the raw end nearest to "worse"
    limit = f"+{max_drop:.4g}" if up else f"-{max_drop:g}"
    if up and res.max_increase_pct is not None:
        limit += f" ({res.max_increase_pct:g}% of the baseline)"
    if gate.mode == "plain":
        if (res.delta > max_drop) if up else (res.delta < -max_drop):
            res.verdict, res.reason = "regressed", f"delta {res.delta:+.4g} {'>' if up else '<'} {limit}"
        elif (res.delta < 0) if up else (res.delta > 0):
            res.verdict = "improved"
    elif gate.mode == "strict":
        res.p_test = s.p_not_inferior(max_drop)
        if s.bound((1 - gate.confidence) / 2) > -max_drop:
            res.verdict = "improved" if s.bound((1 - gate.confidence) / 2) > 0 else "pass"
        else:
            res.verdict = "unproven"
            res.reason = (f"strict: CI {'upper' if up else 'lower'} bound {raw_good:+.4g} {'≥' if up else '≤'} {limit}, "
                          f"so a {'rise' if up else 'drop'} beyond the margin is not ruled out")
    elif reject and res.discordant is not None:
        d = res.discordant
        p = res.p_adjusted
        assert p is not None  # a rejection comes from the corrected family, which sets it
        res.verdict = "regressed"
        res.reason = (f"{res.test}: {d['lost']} of {d['lost'] + d['gained']} changed cases fell"
                      f"{f' beyond a margin of {max_drop:g}' if max_drop else ''} "
                      f"({'Holm-adjusted ' if gate.correction == 'holm' and res.p_adjusted != res.p_test else ''}"
                      f"p {'< 0.001' if p < 0.001 else format(p, '.3g')})")
    elif reject:
        assert res.p_adjusted is not None  # a rejection comes from the corrected family, which sets it
        adj = "Holm-adjusted " if gate.correction == "holm" and res.ci_confidence != gate.confidence else ""
        res.verdict = "regressed"
        res.reason = (f"{adj}CI {'lower' if up else 'upper'} bound {bad_bound:+.4g} {'>' if up else '<'} {limit} "
                      f"(p {'< 0.001' if res.p_adjusted < 0.001 else format(res.p_adjusted, '.3g')})")
    elif (res.ci_high < 0) if up else (res.ci_low > 0):  # the interval shown lies wholly on the better side of 0
        res.verdict = "improved"


def _cached_note(res: MetricComparison, candidate: RunRecord) -> None:
    """Latencies of cached answers are those recorded when first answered: say how many."""
    info = candidate.metrics[res.metric].info if res.metric in candidate.metrics else {}
    if res.unit == "s" and info.get("cached"):
        res.notes.append(f"{info['cached']} of {info['calls']} answers from the cache, timed when first answered")


def _judge_note(res: MetricComparison, baseline: RunRecord, candidate: RunRecord) -> None:
    """A note when the model that measured the metric changed: a judge's, or
    the answering model under which perplexity was computed (perplexities
    under different tokenizers do not compare)."""
    b, c = baseline.metrics.get(res.metric), candidate.metrics.get(res.metric)
    if not (b and c) or b.info.get("model") == c.info.get("model"):
        return
    if b.info.get("judge") and c.info.get("judge"):
        res.notes.append(f"judge changed: {b.info.get('model')} → {c.info.get('model')}")
    elif res.metric == "perplexity":
        res.notes.append(f"measured under another model ({b.info.get('model')} → {c.info.get('model')}): "
                         "perplexities under different tokenizers do not compare")


def _margin(m: float | None) -> float:
    """A rule's margin where the code has checked it is set (a tested rule has one)."""
    assert m is not None, "a tested rule has a margin"
    return m


def _summary(s: stats.BootstrapSummary | None) -> stats.BootstrapSummary:
    """A metric's summary where the family holds it (the family's members have one)."""
    assert s is not None, "a family member has a summary"
    return s
