"""Calibration of the gate at every size: A/A false alarms and planted
regressions for small eval sets, pass/fail metrics and few clusters.

Each comparison draws a *fresh eval set* and a *fresh baseline and candidate*
from a stochastic model, builds the two run records and gates them with
``llmops_cli.gate.compare`` — the library function ``llmops eval`` and
``llmops gate`` call — with the metric gated alone at ``max_drop: 0`` (the
strictest rule, where noise hurts most). No HTTP, no scorer: the per-case
scores are drawn directly, so 2,000 comparisons per row take seconds.

The stochastic model, per case ``i`` of an eval set:

* a difficulty ``q_i ~ U(0.15, 0.9)`` (fresh per comparison);
* with ``--clusters G`` the cases fall into G clusters (paragraphs), and each
  run draws one shock ``u_g ~ N(0, 0.8)`` per cluster, added on the logit
  scale to every case of that cluster (a retrieval that goes wrong for a
  whole paragraph): the cases of a cluster move together, which is what
  ``gate.cluster`` is for;
* **continuous** metric (``token_f1``: any 0–1 score that varies on every case,
  as at temperature > 0 or with a judge's 1–5 scale): each run's score is
  ``Beta(4·m, 4·(1 − m))`` with ``m = sigmoid(logit(q_i) + u_g)``;
* **0/1** metric (``exact_match``: a pass/fail check): ``Bernoulli(m)``.

**A/A**: baseline and candidate are two independent runs of that model.
Every exit 1 is a false alarm; a one-sided test at 95% promises 2.5%.

**Planted regression**: in the candidate, each case fails (scores 0, as a
failed call counts) with probability ``--plant``; the row prints the
detection rate next to the power the gate predicted (``power_at`` of each
comparison at the drop's expected size, averaged).

The 810-case *family-wise* rate (four metrics, Holm) on real SQuAD answers is
``benchmarks/calibration.py``'s; this script's 810 rows gate one synthetic
metric at a time.

Usage::

    python benchmarks/calibration_small.py                 # every row (~5–10 min on 2 cores)
    python benchmarks/calibration_small.py --quick         # 300 comparisons per row
    python benchmarks/calibration_small.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmops_cli.config import Gate, GateRule  # noqa: E402
from llmops_cli.gate.rules import compare  # noqa: E402
from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord  # noqa: E402
from calibration import wilson  # noqa: E402  (benchmarks/calibration.py, beside this script)

KINDS = {"continuous": "token_f1", "0/1": "exact_match"}


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:5.1%} ({k}/{n}; {lo:.1%}–{hi:.1%})"


def record(kind: str, metric: str, scores: np.ndarray, clusters: np.ndarray | None) -> RunRecord:
    """A run record holding ``scores`` (per case) of ``metric``."""
    cases = []
    for i, s in enumerate(scores):
        inputs = {"question": f"q{i}"}
        if clusters is not None:
            inputs["para"] = f"p{clusters[i]}"
        v = None if np.isnan(s) else float(s)
        cases.append(CaseRecord(id=f"c{i:04d}", inputs=inputs, references=["r"], output=None if v is None else "a",
                                error="planted failure" if v is None else None, scores={metric: v}))
    vals = [float(s) for s in scores if not np.isnan(s)]
    summary = MetricSummary(aggregate=sum(vals) / len(vals) if vals else None, scale=1.0, n_scored=len(vals),
                            n_unscored=len(scores) - len(vals))
    return RunRecord(kind=kind, config={"model": "m"}, fingerprint="fp", dataset_hash="d",
                     metrics={metric: summary}, cases=cases)


class Model:
    """One fresh eval set of ``n`` cases (``G`` clusters or none) and its stochastic runs."""

    def __init__(self, rng: np.random.Generator, n: int, clusters: int | None):
        self.rng, self.n = rng, n
        self.q = rng.uniform(0.15, 0.9, n)
        self.clusters = None if not clusters else np.sort(rng.integers(0, clusters, n))
        if clusters:  # every cluster holds at least one case
            self.clusters[:clusters] = np.arange(clusters)
            self.clusters = np.sort(self.clusters)
        self.G = clusters

    def run(self, kind: str, plant: float = 0.0) -> np.ndarray:
        logit = np.log(self.q / (1 - self.q))
        if self.G:
            logit = logit + self.rng.normal(0, 0.8, self.G)[self.clusters]
        m = 1 / (1 + np.exp(-logit))
        if kind == "0/1":
            s = (self.rng.random(self.n) < m).astype(float)
        else:
            s = self.rng.beta(4 * m, 4 * (1 - m))
        if plant:
            s[self.rng.random(self.n) < plant] = np.nan  # a failed case: counts as 0
        return s


def row(rng, kind: str, n: int, clusters: int | None, comparisons: int, plant: float, resamples: int) -> dict:
    metric = KINDS[kind]
    g = Gate(metrics={metric: GateRule(max_drop=0.0)}, resamples=resamples, cluster="para" if clusters else None)
    alarms, deltas = 0, []
    results = []
    t0 = time.perf_counter()
    for _ in range(comparisons):
        model = Model(rng, n, clusters)
        base = record("baseline", metric, model.run(kind), model.clusters)
        cand = record("run", metric, model.run(kind, plant), model.clusters)
        cmp = compare(base, cand, g)
        m = cmp.metrics[0]
        alarms += m.failed
        deltas.append(m.delta if m.delta is not None else 0.0)
        results.append(m)
    out = {"kind": kind, "n": n, "clusters": clusters, "comparisons": comparisons, "plant": plant,
           "alarms": alarms, "rate": alarms / comparisons, "seconds": time.perf_counter() - t0}
    if plant:
        true_drop = -sum(deltas) / len(deltas)
        preds = [m.power_at(true_drop) for m in results]
        preds = [p for p in preds if p is not None]
        out["true_drop"] = true_drop
        out["predicted_power"] = sum(preds) / len(preds) if preds else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=2000, help="comparisons per row at 8, 20, 50 cases and in clusters")
    ap.add_argument("--large", type=int, default=1000, help="comparisons per row at 810 cases")
    ap.add_argument("--planted", type=int, default=500, help="comparisons per planted-regression row")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--quick", action="store_true", help="300 comparisons per row (a smoke run)")
    ap.add_argument("--only", choices=["aa", "clusters", "planted"], help="run one part only")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 20, 50, 810], help="eval-set sizes of the A/A rows")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.quick:
        args.small = args.large = args.planted = 300
    rng = np.random.default_rng(args.seed)
    plan = []
    if args.only in (None, "aa"):
        plan += [(k, n, None, args.small if n < 810 else args.large, 0.0) for k in KINDS for n in args.sizes]
    if args.only in (None, "clusters"):
        plan += [(k, 40, G, args.small, 0.0) for k in KINDS for G in (5, 10)]
    if args.only in (None, "planted"):
        plan += [(k, n, None, args.planted, p) for k in KINDS for n, p in ((50, 0.15), (810, 0.04))]
    rows = []
    print(f"{'metric':11s} {'cases':>5s} {'clusters':>8s}  {'A/A false alarms (Wilson 95%)':34s} "
          f"{'planted: detected':>34s}  predicted", flush=True)
    for kind, n, G, count, plant in plan:
        r = row(rng, kind, n, G, count, plant, args.resamples)
        rows.append(r)
        if plant:
            pp = r["predicted_power"]
            print(f"{kind:11s} {n:5d} {G or '—':>8}  {'planted ' + format(plant, '.0%') + ', drop ' + format(r['true_drop'], '.3f'):34s} "
                  f"{rate(r['alarms'], count):>34s}  {'—' if pp is None else format(pp, '.1%')}", flush=True)
        else:
            print(f"{kind:11s} {n:5d} {G or '—':>8}  {rate(r['alarms'], count):34s}   ({r['seconds']:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
