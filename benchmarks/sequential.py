"""Calibration and savings of the sequential gate (``gate.sequential``)
against the fixed-n gate, on the same draws.

Data: the 810 SQuAD v1.1 "Super_Bowl_50" questions and the published
systems' answers in ``examples/squad-predictions`` (Rajpurkar et al. 2016,
CC BY-SA 4.0), each system scored once through the library
(``llmops_cli.jobs.runner.score_outputs``) with four case-mean metrics: exact
match, token F1, ROUGE-1 and ROUGE-L.

* **A/A** (``--aa``, default 2,000): a *stochastic model* answers each
  question with the answer of r-net-plus or slqa-plus, chosen at random per
  question; each comparison draws a fresh baseline and a fresh candidate run
  and gates all four metrics at ``max_drop: 0.01``. Every exit 1 is a false
  alarm; the gate promises at most 2.5% family-wise. The sequential gate
  answers the cases in a fresh seeded order per comparison.
* **bert-ensemble → logistic-regression** and **bert-ensemble → slqa-plus**
  (exact match and token F1 at ``max_drop: 0.02``, as
  ``examples/squad-predictions/llmops.yaml``): deterministic candidates, so
  the only randomness is the order: the gate's own (``gate.seed`` 12345,
  what ``llmops eval --sequential`` does) and ``--orders`` other seeds.
* **Unchanged stochastic model at ``max_drop: 0.05``** (``--unchanged``,
  default 500): exit 0 wanted, and how many calls it saves.
* **Planted regression** (``--planted``, default 300): each candidate answer
  of the stochastic model fails (no output: the worst value) with
  probability ``--plant`` (0.05), all four metrics at ``max_drop: 0.01``.

The sequential gate is run as the eval loop runs it — waves of ``--wave``
cases (default 16, a ``-j 16`` run) shown to
``llmops_cli.gate.sequential_rules.SequentialGate`` — and the fixed-n gate is
``llmops_cli.gate.compare`` on all 810 cases (1,000 bootstrap resamples,
Holm), the exit code read through ``llmops_cli.gate.outcome.from_comparison``.
One sequential run per scenario is also gated through
``compare_sequential`` (what ``llmops gate`` does with its record) to show
the same exit code. Proportions carry Wilson 95% intervals.

Usage::

    python benchmarks/sequential.py                      # everything, ~10 min on 2 busy cores
    python benchmarks/sequential.py --aa 200 --unchanged 100 --planted 0 --fixed 0
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

from llmops_cli.config import Gate, GateRule  # noqa: E402
from llmops_cli.config.measure import Sequential  # noqa: E402
from llmops_cli.gate.rules import compare  # noqa: E402
from llmops_cli.gate.outcome import from_comparison  # noqa: E402
from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord  # noqa: E402
from llmops_cli.gate.sequential_rules import SequentialGate, compare_sequential  # noqa: E402
from llmops_cli.jobs.sequential_run import seeded_order  # noqa: E402
from calibration import failed_case, scored_systems, wilson  # noqa: E402  (benchmarks/calibration.py, beside this script)

EXAMPLE = ROOT / "examples" / "squad-predictions"
METRICS = ["exact_match", "token_f1", "rouge1", "rougeL"]
SYSTEMS = ["bert-ensemble", "logistic-regression", "slqa-plus", "r-net-plus"]
GATE_SEED = 12345  # gate.seed's default: the order `llmops eval --sequential` uses


def record_of(cases: list[CaseRecord], like: RunRecord, kind: str = "run") -> RunRecord:
    metrics = {m: MetricSummary(aggregate=None, scale=like.metrics[m].scale, n_scored=len(cases)) for m in METRICS}
    return RunRecord(kind=kind, config=like.config, fingerprint=like.fingerprint, dataset_hash=like.dataset_hash,
                     metrics=metrics, cases=cases)


def draw(runs, rng: random.Random, kind: str, plant: float = 0.0, systems=("r-net-plus", "slqa-plus")) -> RunRecord:
    """One run of the stochastic model (per case a random system's answer;
    with probability ``plant`` a failed call instead)."""
    first = runs[systems[0]]
    cases = []
    for i in range(len(first.cases)):
        if plant and rng.random() < plant:
            cases.append(failed_case(first.cases[i], METRICS))
        else:
            cases.append(runs[systems[rng.randrange(len(systems))]].cases[i])
    return record_of(cases, first, kind)


def gate_for(metrics: list[str], max_drop: float, population: str = "cases") -> Gate:
    return Gate(metrics={m: GateRule(max_drop=max_drop) for m in metrics}, sequential=Sequential(population=population))


def sequential(baseline: RunRecord, candidate: RunRecord, gate: Gate, seed: int, wave: int):
    """The sequential gate as the eval loop runs it: ``(exit code, cases
    answered, state)``."""
    cmap = candidate.case_map()
    order = seeded_order([c.id for c in candidate.cases], seed)
    state = SequentialGate(gate, baseline, order, want_intervals=False)
    pos = 0
    while pos < len(order) and not state.done:
        state.observe([cmap[cid] for cid in order[pos:pos + wave]])
        pos += wave
    return (1 if "regressed" in state.decisions.values() else 0), state.answered, state


def fixed(baseline: RunRecord, candidate: RunRecord, gate: Gate) -> int:
    g = gate.model_copy(update={"sequential": None})
    return from_comparison(compare(baseline, candidate, g)).exit_code


def through_the_gate(baseline: RunRecord, candidate: RunRecord, gate: Gate, seed: int, wave: int) -> int:
    """One sequential run gated as ``llmops gate`` gates its record."""
    code, n, state = sequential(baseline, candidate, gate, seed, wave)
    cmap = candidate.case_map()
    record = record_of([cmap[cid] for cid in state.order[:n]], candidate)
    record.sequential = state.info()
    return from_comparison(compare_sequential(baseline, record, gate.model_copy(update={"sequential": None}))).exit_code


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:.1%} ({k}/{n}; {lo:.1%}–{hi:.1%})" if n else "—"


def mean(xs) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def run(args) -> dict:
    t0 = time.perf_counter()
    runs = scored_systems(SYSTEMS, METRICS)
    total = len(runs["bert-ensemble"].cases)
    print(f"scored {len(SYSTEMS)} systems × {total} questions in {time.perf_counter() - t0:.1f} s; waves of {args.wave}",
          flush=True)
    rng = random.Random(args.seed)
    rows, result = [], {"wave": args.wave, "cases": total}

    def row(name, n, seq_exit1, seq_cases, fix_exit1, fix_n, goal):
        saved = 1 - mean(seq_cases) / total
        rows.append((name, n, rate(seq_exit1, n), f"{mean(seq_cases):.0f} ({saved:.0%} saved)",
                     rate(fix_exit1, fix_n) if fix_n else "—", goal))
        result[name] = {"n": n, "sequential_exit1": seq_exit1, "mean_cases": mean(seq_cases), "saved_share": saved,
                        "max_cases": max(seq_cases), "fixed_exit1": fix_exit1, "fixed_n": fix_n}
        print(f"  {name}: sequential exit 1 {rate(seq_exit1, n)}, mean {mean(seq_cases):.0f} cases; "
              f"fixed-n exit 1 {rate(fix_exit1, fix_n) if fix_n else '—'}", flush=True)

    def stochastic(g: Gate, count: int, fixed_cap: int, plant: float = 0.0, what: str = ""):
        """``count`` comparisons of fresh stochastic baseline/candidate draws (each candidate answer failing with
        probability ``plant``) under ``g``: sequential exits 1, cases answered, and the fixed-n gate's exits 1 on
        the first ``fixed_cap`` draws; with ``plant``, also each draw's token F1 drop."""
        seq1, cases, fix1, fixn, drops = 0, [], 0, 0, []
        for k in range(count):
            b, c = draw(runs, rng, "baseline"), draw(runs, rng, "run", plant=plant)
            code, n, _ = sequential(b, c, g, rng.randrange(2**31), args.wave)
            seq1 += code == 1
            cases.append(n)
            if plant:
                drops.append(mean([x.scores["token_f1"] for x in b.cases])
                             - mean([x.scores.get("token_f1") or 0.0 for x in c.cases]))
            if k < fixed_cap:
                fix1 += fixed(b, c, g) == 1
                fixn += 1
            if what and args.progress and (k + 1) % 200 == 0:
                print(f"    {what} {k + 1}/{count}: sequential {seq1}, fixed {fix1}/{fixn}", flush=True)
        return seq1, cases, fix1, fixn, drops

    # -- A/A -----------------------------------------------------------------------------------
    if args.aa:
        t1 = time.perf_counter()
        seq1, cases, fix1, fixn, _ = stochastic(gate_for(METRICS, 0.01), args.aa, args.fixed, what="A/A")
        row("A/A, 4 metrics, max_drop 0.01", args.aa, seq1, cases, fix1, fixn, "exit 1 ≤ 2.5%")
        print(f"    ({time.perf_counter() - t1:.0f} s)", flush=True)

    # -- A/A at max_drop 0: the truth sits on the boundary, the hardest case for the guarantee ------
    if args.aa_zero:
        seq1, cases, fix1, fixn, _ = stochastic(gate_for(METRICS, 0.0), args.aa_zero, min(args.fixed, args.aa_zero))
        row("A/A, 4 metrics, max_drop 0", args.aa_zero, seq1, cases, fix1, fixn, "exit 1 ≤ 2.5%")

    # -- deterministic candidates --------------------------------------------------------------
    base = runs["bert-ensemble"].model_copy(update={"kind": "baseline"})
    for cand_name, goal in ([] if args.no_systems else (("logistic-regression", "exit 1 after ≤ 15% of cases"),
                            ("slqa-plus", "exit 1 before all 810"))):
        cand = runs[cand_name]
        for population in ("cases", "eval_set"):
            g = gate_for(["exact_match", "token_f1"], 0.02, population)
            code, n, state = sequential(base, cand, g, GATE_SEED, args.wave)
            via_gate = through_the_gate(base, cand, g, GATE_SEED, args.wave)
            seeds = [GATE_SEED] + [rng.randrange(2**31) for _ in range(args.orders)]
            outs = [sequential(base, cand, g, s, args.wave)[:2] for s in seeds]
            label = f"bert-ensemble → {cand_name}, max_drop 0.02" + (" (population: eval_set)" if population == "eval_set" else "")
            fix = fixed(base, cand, g) if population == "cases" else None
            print(f"  {label}: gate seed {GATE_SEED}: exit {code} after {n} of {total} cases ({1 - n / total:.0%} saved; "
                  f"gated from its record: exit {via_gate}); {state.info().reason}", flush=True)
            row(label, len(seeds), sum(c == 1 for c, _ in outs), [m for _, m in outs],
                int(fix == 1) if fix is not None else 0, 1 if fix is not None else 0, goal)
            result[label].update({"gate_seed": {"exit": code, "cases": n, "exit_via_record": via_gate},
                                  "exit1_before_all": sum(c == 1 and m < total for c, m in outs),
                                  "within_15pct": sum(c == 1 and m <= 0.15 * total for c, m in outs)})

    # -- unchanged stochastic model, max_drop 0.05 ---------------------------------------------
    if args.unchanged:
        seq1, cases, fix1, fixn, _ = stochastic(gate_for(METRICS, 0.05), args.unchanged, min(args.fixed, 200))
        row("unchanged stochastic model, 4 metrics, max_drop 0.05", args.unchanged, seq1, cases, fix1, fixn,
            "exit 0, ≥ 50% of calls saved")

    # -- planted regression --------------------------------------------------------------------
    if args.planted:
        seq1, cases, fix1, fixn, drops = stochastic(gate_for(METRICS, 0.01), args.planted, min(args.fixed, 300),
                                                    plant=args.plant)
        row(f"planted: {args.plant:.0%} of answers fail (token F1 drop ≈ {mean(drops):.3f}), max_drop 0.01",
            args.planted, seq1, cases, fix1, fixn, "detect (power)")

    print()
    print(f"| scenario | runs | sequential: exit 1 | sequential: cases answered (mean of {total}) | fixed-n: exit 1 "
          "(all 810 answered) | goal |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aa", type=int, default=2000, help="A/A comparisons (default 2000)")
    ap.add_argument("--aa-zero", type=int, default=0, help="A/A comparisons at max_drop 0 (the boundary itself)")
    ap.add_argument("--no-systems", action="store_true", help="skip the SQuAD system changes")
    ap.add_argument("--fixed", type=int, default=2000,
                    help="of those, how many also through the fixed-n gate (default: all; it is the slow part)")
    ap.add_argument("--orders", type=int, default=200, help="other seeded orders for the deterministic candidates")
    ap.add_argument("--unchanged", type=int, default=500, help="unchanged stochastic runs at max_drop 0.05")
    ap.add_argument("--planted", type=int, default=300, help="runs with a planted regression")
    ap.add_argument("--plant", type=float, default=0.05, help="probability that a candidate answer fails")
    ap.add_argument("--wave", type=int, default=16, help="cases per wave (the run's concurrency)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    res = run(args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
