"""Calibration of the gate: false alarms on A/A comparisons, and detection of a
planted regression against the power the gate predicts.

A *stochastic model* answers each of the 810 SQuAD "Super_Bowl_50" questions
with the answer of one of two published systems, chosen at random per
question (``--systems``, default r-net-plus and slqa-plus). Each comparison
draws a fresh baseline run and a fresh candidate run from it and gates the
candidate with ``exact_match``, ``token_f1``, ``bleu`` and ``rougeL`` at
``max_drop: 0`` (the strictest rule, where noise hurts most):

* **A/A**: nothing changed. Every exit 1 is a false alarm. A one-sided test
  at 95% promises 2.5% per metric, and Holm's correction promises at most
  2.5% for the family.
* **Planted regression**: in the candidate, each answer is replaced with
  probability ``--plant`` by a failed call (no output: it counts as the
  worst value), a drop of known expected size. The detection rate per
  metric is printed next to the power the gate predicted for that drop.

Each system's outputs are scored once through the library
(``llmops_cli.jobs.runner.score_outputs``); a draw picks, per case, the scored case
record of the chosen system, so every comparison goes through
``llmops_cli.gate.rules.compare`` exactly as ``llmops score`` does.

Usage::

    python benchmarks/calibration.py                 # 600 A/A + 200 planted, ~3 min on 2 cores
    python benchmarks/calibration.py --aa 100 --planted 0 --correction none

Data: SQuAD v1.1 (Rajpurkar et al. 2016, CC BY-SA 4.0), see
examples/squad-rag/data/SOURCE.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmops_cli.config import Gate, GateRule, load_config  # noqa: E402
from llmops_cli.gate.rules import compare  # noqa: E402
from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord  # noqa: E402
from llmops_cli.jobs.runner import score_outputs  # noqa: E402

EXAMPLE = ROOT / "examples" / "squad-predictions"
METRICS = ["exact_match", "token_f1", "bleu", "rougeL"]


def scored_systems(systems: list[str], metrics: list[str] = METRICS) -> dict[str, RunRecord]:
    """Each system's 810 answers scored by the library with ``metrics``."""
    cfg = load_config(EXAMPLE / "llmops.yaml")
    cfg.metrics = list(metrics)
    out = {}
    for s in systems:
        preds = json.loads((EXAMPLE / f"predictions-{s}.json").read_text(encoding="utf-8"))
        out[s] = score_outputs(cfg, preds, name=s)
    return out


def failed_case(case: CaseRecord, metrics: list[str] = METRICS) -> CaseRecord:
    """The case as a failed call left it: no output, no scores."""
    return CaseRecord(id=case.id, inputs=case.inputs, references=case.references, output=None,
                      error="BadRequestError: planted failure", scores={m: None for m in metrics})


def draw(runs: dict[str, RunRecord], systems: list[str], rng: random.Random, kind: str, plant: float = 0.0) -> RunRecord:
    """One run of the stochastic model: per case, the scored answer of a
    randomly chosen system (or, with probability ``plant``, a failure)."""
    first = runs[systems[0]]
    cases = []
    for i in range(len(first.cases)):
        if plant and rng.random() < plant:
            cases.append(failed_case(first.cases[i]))
        else:
            cases.append(runs[systems[rng.randrange(len(systems))]].cases[i])
    metrics = {m: MetricSummary(aggregate=None, scale=first.metrics[m].scale, n_scored=len(cases)) for m in METRICS}
    return RunRecord(kind=kind, config=first.config, fingerprint=first.fingerprint, dataset_hash=first.dataset_hash,
                     metrics=metrics, cases=cases)


def gate(correction: str, mode: str, resamples: int) -> Gate:
    kw = {"metrics": {m: GateRule(max_drop=0.0) for m in METRICS}, "mode": mode, "resamples": resamples}
    if "correction" in Gate.model_fields:  # older versions of the gate have no correction
        kw["correction"] = correction
    return Gate(**kw)


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion k/n (Wilson 1927;
    statsmodels' ``proportion_confint(method="wilson")``); (0, 1) for n = 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return 0.0, 1.0
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:6.1%} ({k}/{n}; 95% CI {lo:.1%}–{hi:.1%})"


def run(args) -> dict:
    t0 = time.perf_counter()
    runs = scored_systems(args.systems)
    rng = random.Random(args.seed)
    g = gate(args.correction, args.mode, args.resamples)
    correction = args.correction if "correction" in Gate.model_fields else "none (this version has no correction)"
    print(f"scored {len(args.systems)} systems in {time.perf_counter() - t0:.1f} s; gate mode {args.mode}, "
          f"correction {correction}, {args.resamples} resamples", flush=True)
    result: dict = {"systems": args.systems, "mode": args.mode, "correction": correction}

    # -- A/A ---------------------------------------------------------------------------
    alarms = {m: 0 for m in METRICS}
    alone = {m: 0 for m in METRICS}  # the metric's own test at (1 − confidence)/2, as if it were gated alone
    family = 0
    t1 = time.perf_counter()
    for k in range(args.aa):
        base = draw(runs, args.systems, rng, "baseline")
        cand = draw(runs, args.systems, rng, "run")
        cmp = compare(base, cand, g)
        for m in cmp.metrics:
            alarms[m.metric] += m.failed
            p = getattr(m, "p_test", None)
            alone[m.metric] += m.failed if p is None else p <= (1 - g.confidence) / 2
        family += not cmp.passed
        if args.progress and (k + 1) % 50 == 0:
            print(f"  A/A {k + 1}/{args.aa}: family {family}", flush=True)
    if args.aa:
        print(flush=True)
        print(f"A/A: {args.aa} comparisons of an unchanged stochastic model ({' / '.join(args.systems)}), "
              f"{len(runs[args.systems[0]].cases)} cases, max_drop 0 ({time.perf_counter() - t1:.0f} s)")
        print(f"  family-wise false alarms: {rate(family, args.aa)}   (goal ≤ 2.5%, done when ≤ 3%)")
        print(f"  {'metric':12s} {'gated alone (uncorrected)':>38s}  {'in the family':>38s}")
        for m in METRICS:
            print(f"  {m:12s} {rate(alone[m], args.aa):>38s}  {rate(alarms[m], args.aa):>38s}")
        result["aa"] = {"n": args.aa, "family": family, "per_metric_in_family": alarms, "per_metric_alone": alone}

    # -- planted regression -----------------------------------------------------------
    if args.planted:
        detected = {m: 0 for m in METRICS}
        predicted = {m: [] for m in METRICS}
        drops = {m: [] for m in METRICS}
        t2 = time.perf_counter()
        for _ in range(args.planted):
            base = draw(runs, args.systems, rng, "baseline")
            cand = draw(runs, args.systems, rng, "run", plant=args.plant)
            cmp = compare(base, cand, g)
            for m in cmp.metrics:
                detected[m.metric] += m.failed
                drops[m.metric].append(-m.delta)
        # the planted drop's size: its mean over the draws (its expectation)
        true_drop = {m: sum(v) / len(v) for m, v in drops.items()}
        # the power the gate predicts for that drop, from each comparison's own standard error
        for _ in range(args.planted):
            base = draw(runs, args.systems, rng, "baseline")
            cand = draw(runs, args.systems, rng, "run", plant=args.plant)
            for m in compare(base, cand, g).metrics:
                p = m.power_at(true_drop[m.metric]) if hasattr(m, "power_at") else None
                if p is not None:
                    predicted[m.metric].append(p)
        print(f"\nplanted regression: each candidate answer fails with probability {args.plant:g} "
              f"({args.planted} comparisons, {time.perf_counter() - t2:.0f} s)")
        print(f"  {'metric':12s} {'true drop':>10s}  {'detected':>38s}  predicted power")
        result["planted"] = {"n": args.planted, "plant": args.plant, "metrics": {}}
        for m in METRICS:
            pp = sum(predicted[m]) / len(predicted[m]) if predicted[m] else None
            print(f"  {m:12s} {true_drop[m]:10.4f}  {rate(detected[m], args.planted):>38s}  "
                  + ("—" if pp is None else f"{pp:.1%}"))
            result["planted"]["metrics"][m] = {"true_drop": true_drop[m], "detected": detected[m], "predicted_power": pp}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aa", type=int, default=600, help="A/A comparisons (default 600)")
    ap.add_argument("--planted", type=int, default=200, help="comparisons with a planted regression (default 200)")
    ap.add_argument("--plant", type=float, default=0.03, help="probability that a candidate answer fails (default 0.03)")
    ap.add_argument("--systems", nargs="+", default=["r-net-plus", "slqa-plus"], help="systems the stochastic model mixes")
    ap.add_argument("--correction", default="holm", choices=["holm", "none"])
    ap.add_argument("--mode", default="paired", choices=["paired", "plain", "strict"])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    res = run(args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
