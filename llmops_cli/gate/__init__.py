"""The gate: a candidate run compared with its baseline, case by case, and the verdict.

* :mod:`.baseline` — the baseline store: load (whole, or as the gate reads it),
  checks (eval set, judges, unscored), make, write, promote.
* :mod:`.pairing` — pairing cases by id (a failed case counts as the worst value).
* :mod:`.stats` — paired bootstrap, intervals, p-values, Holm, power; :mod:`.student` — Student's t
  (pure Python); :mod:`.exact` — McNemar's exact test and Tango's score test for pass/fail metrics.
* :mod:`.power` — the minimum detectable effect of each rule; power warnings.
* :mod:`.rules` — :func:`compare`: the rules (drops and rises, whole run and per slice).
* :mod:`.sequential` — anytime-valid betting confidence sequences; :mod:`.sequential_rules` — the
  sequential gate's decisions (which metrics it can decide, when to stop, the verdict replayed from a record).
* :mod:`.comparison` — what a comparison says: per metric, per case, as a whole.
* :mod:`.outcome` — :class:`Outcome`: the exit code and its reason.

Stands on measure (scorer definitions), plan, record, config and core.
"""

from llmops_cli.core.exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "compare": "rules", "margin": "rules", "Comparison": "comparison", "MetricComparison": "comparison",
    "Outcome": "outcome", "load_baseline": "baseline", "write_baseline": "baseline", "assess_power": "power",
})
__all__ = __dir__()
