"""What a comparison of two runs says: per metric (:class:`MetricComparison`),
per case (:class:`CaseChange`) and as a whole (:class:`Comparison`), in the
metrics' own units (0–1, or 0–100 for BLEU). Made by
:func:`llmops_cli.gate.rules.compare`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from llmops_cli.gate import stats

Verdict = Literal["pass", "improved", "regressed", "below min", "above max", "unproven", "unscored", "info"]


@dataclass
class MetricComparison:
    """One metric's comparison; scores in the metric's own units (0–1, or
    0–100 for BLEU).

    ``n``: cases compared (the candidate's failures included);
    ``n_failed``: of those, cases the candidate failed, counted as the
    metric's worst value; ``n_baseline_missing``: cases the baseline did not
    score (excluded); ``n_unscored``: candidate cases without a score that
    did not fail, e.g. an unparseable judge verdict (excluded).
    ``ci_low``/``ci_high``: the interval the verdict uses, at two-sided
    confidence ``ci_confidence`` (Holm-adjusted for gated metrics in paired
    mode); ``raw_ci_low``/``raw_ci_high``: at the gate's own confidence.
    ``p_value``: two-sided p of "no change" (unadjusted); ``p_test``: the
    one-sided p of the rule's test (paired: "the drop exceeds max_drop";
    strict: "the drop does not exceed max_drop" is *not* shown);
    ``p_adjusted``: ``p_test`` after Holm. ``se``: the delta's standard
    error; ``mde``: smallest drop exiting 1 with 80% probability, ``None``
    when its power is unknown (no variance). ``df``: degrees of freedom
    of the Student-t quantile behind the interval and p (None: normal);
    ``test``: the test that decided, in words; ``discordant``: for a 0/1
    metric tested exactly, its ``lost``/``gained``/``n`` pairs;
    ``too_few``: set when those pairs can never reach significance
    (e.g. "3 cases changed: too few to decide at 95%"), the p-value then
    not shown. ``candidate_all``: the
    candidate's aggregate over its whole run (what ``min`` and ``max`` apply
    to). ``higher_is_better``: False for costs, latencies, tokens and
    perplexity (in ``unit``: ``USD``, ``s``, ``tokens``), whose bad direction
    is a rise: ``max_drop`` then holds the allowed rise (``max_increase``, or
    ``max_increase_pct`` of the baseline, in the metric's unit) and ``mde``
    the smallest rise caught."""

    metric: str
    n: int
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    mde: float | None
    rule: str
    verdict: Verdict
    scale: float = 1.0
    reason: str = ""
    ci_confidence: float | None = None
    raw_ci_low: float | None = None
    raw_ci_high: float | None = None
    p_test: float | None = None
    p_adjusted: float | None = None
    se: float | None = None
    alpha_one_sided: float | None = None
    n_failed: int = 0
    n_baseline_missing: int = 0
    n_unscored: int = 0
    candidate_all: float | None = None
    max_drop: float | None = None
    power_warning: str = ""
    power_required: bool = False
    cases_needed: int | None = None
    notes: list[str] = field(default_factory=list)
    higher_is_better: bool = True
    unit: str = ""
    max_increase_pct: float | None = None
    slice: str | None = None  # "field=value": this comparison covers that slice's cases only
    df: float | None = None  # degrees of freedom of the t quantile (None: the normal)
    test: str = ""  # the test that decided: "t, 7 df, paired SE", "McNemar exact", ...
    discordant: dict | None = None  # a 0/1 metric: {"lost", "gained", "n"} pairs
    too_few: str = ""  # a 0/1 metric whose changed cases can never reach significance: why

    @property
    def failed(self) -> bool:
        return self.verdict in ("regressed", "below min", "above max", "unproven")

    @property
    def label(self) -> str:
        """``token_f1``, or ``token_f1 [qtype=who]`` for a slice."""
        return self.metric if self.slice is None else f"{self.metric} [{self.slice}]"

    def power_at(self, drop: float) -> float | None:
        """Predicted probability (0–1) that a true drop of ``drop`` (metric
        units) makes this metric fail under its rule (normal approximation;
        paired mode). ``None`` without a rule or standard error."""
        if self.max_drop is None or self.se is None or self.alpha_one_sided is None:
            return None
        return stats.power(drop, self.max_drop, self.se, self.alpha_one_sided, self.df)


@dataclass
class CaseChange:
    """A case whose score moved: per-metric (baseline, candidate) scores; a
    candidate failure shows as the metric's worst value and ``candidate_error``."""

    id: str
    delta: float
    metric: str
    baseline_output: str | None
    candidate_output: str | None
    inputs: dict[str, Any]
    references: list[str]
    scores: dict[str, tuple[float | None, float | None]]
    candidate_error: str | None = None
    reasons: dict[str, str] = field(default_factory=dict)  # the candidate's failed checks: name → why


@dataclass
class Comparison:
    """Result of :func:`compare`. ``passed`` is False when a gated metric
    failed its rule, when a gated metric could not be scored (``unscored``:
    the run cannot pass, exit 3), or when ``gate.on_model_drift: fail`` and
    the served model drifted (``drift_failed``). ``commits``: with
    ``--baseline-ref``, the commit each side was read from, by ``"baseline"``
    and ``"candidate"`` (e.g. ``"origin/main 1a2b3c4"``, ``"working tree at
    5d6e7f8"`` or ``"5d6e7f8 + uncommitted changes"``); empty otherwise.
    ``sequential``: for a sequential run (:mod:`llmops_cli.gate.sequential_rules`),
    where it stopped and why — ``answered``, ``total``, ``not_needed`` (ids),
    ``saved_share``, ``headline`` ("decided after 140 of 810 cases …") —
    else None."""

    mode: str
    confidence: float
    resamples: int
    metrics: list[MetricComparison]
    changed_cases: list[CaseChange]
    only_baseline: list[str]
    only_candidate: list[str]
    config_changes: list[str]
    baseline_fingerprint: str
    candidate_fingerprint: str
    cluster: str | None = None
    n_improved_cases: int = 0
    n_worse_cases: int = 0
    correction: str = "holm"
    family_size: int = 0
    model_drift: list[str] = field(default_factory=list)
    drift_failed: bool = False
    environment_changes: list[str] = field(default_factory=list)
    slices: list[MetricComparison] = field(default_factory=list)
    commits: dict[str, str] = field(default_factory=dict)  # --baseline-ref: "baseline"/"candidate" → e.g. "origin/main 1a2b3c4"
    sequential: dict[str, Any] | None = None  # a sequential run: llmops_cli.gate.sequential_rules.sequential_summary

    @property
    def tests(self) -> list[MetricComparison]:
        """Whole-run comparisons, then per-slice ones."""
        return self.metrics + self.slices

    @property
    def failed(self) -> list[MetricComparison]:
        return [m for m in self.tests if m.failed]

    @property
    def unscored(self) -> list[MetricComparison]:
        return [m for m in self.tests if m.verdict == "unscored"]

    @property
    def power_warnings(self) -> list[str]:
        return [m.power_warning for m in self.metrics if m.power_warning]

    @property
    def underpowered(self) -> list[MetricComparison]:
        """Gated metrics that miss their ``require_power`` (exit 2)."""
        return [m for m in self.metrics if m.power_required]

    @property
    def passed(self) -> bool:
        return not self.failed and not self.unscored and not self.drift_failed and not self.underpowered

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d
