"""Text both writers use: numbers in a metric's units, intervals, p-values,
MDEs, the rule sentence, the usage line, why a case fell, and the layout of
the per-slice tables."""

from __future__ import annotations

from llmops_cli.gate.comparison import Comparison, MetricComparison


def fmt(v: float | None, scale: float = 1.0, signed: bool = False, unit: str = "") -> str:
    """A score in its metric's units: 4 decimals for 0–1, 2 for 0–100, 4
    significant digits for measured quantities (``unit``: USD, s, tokens)."""
    if v is None:
        return "—"
    if unit:
        return f"{v:+.4g}" if signed else f"{v:.4g}"
    digits = 2 if scale > 1 else 4
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"

def fmt_ci(m: MetricComparison) -> str:
    """The interval the verdict used; its confidence is named when a
    correction widened it (e.g. ``97.5%``)."""
    if m.ci_low is None:
        return "—"
    text = f"[{fmt(m.ci_low, m.scale, True, m.unit)}, {fmt(m.ci_high, m.scale, True, m.unit)}]"
    if _sequential(m) and m.ci_confidence is not None:  # the sequence, at its Bonferroni share of the level
        return text + f" @{100 * m.ci_confidence:.4g}%"
    if m.ci_confidence is not None and m.raw_ci_low is not None and (m.ci_low, m.ci_high) != (m.raw_ci_low, m.raw_ci_high):
        text += f" @{100 * m.ci_confidence:.4g}%"
    return text

def fmt_p(m: MetricComparison) -> str:
    """The p-value of the rule's test (Holm-adjusted where corrected), else
    the two-sided p of "no change"."""
    if m.too_few:  # no outcome of so few changed cases could fire: no p-value that cannot decide
        return "too few"
    p = m.p_adjusted if m.p_adjusted is not None else (m.p_test if m.p_test is not None else m.p_value)
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"

def _sequential(m: MetricComparison) -> bool:
    """Whether ``m`` was decided by the sequential gate (its rule says so)."""
    return m.rule.endswith("(sequence)")


def fmt_mde(m: MetricComparison) -> str:
    if m.mde is None and _sequential(m):
        return "—"  # the sequential gate has no fixed-n MDE
    if m.mde is None:
        return "unknown" if m.verdict not in ("unscored",) and m.delta is not None else "—"
    return fmt(m.mde, m.scale, unit=m.unit)

def metric_notes(cmp: Comparison) -> list[str]:
    """One line per fact the table cannot show: candidate failures counted
    as the worst value, cases excluded, judge changes."""
    lines = []
    for m in cmp.metrics:
        if m.n_failed:
            worst = "empty answers" if m.scale > 1 else "0"
            lines.append(f"{m.metric}: {m.n_failed} candidate failure{'s' if m.n_failed > 1 else ''} counted as {worst}")
        if m.n_baseline_missing:
            lines.append(f"{m.metric}: {m.n_baseline_missing} case(s) the baseline did not score, excluded")
        if m.n_unscored:
            lines.append(f"{m.metric}: {m.n_unscored} candidate case(s) unscored, excluded")
        lines += [f"{m.metric}: {note}" for note in m.notes]
    return lines

def case_reason(c) -> str:
    """Why a case fell, on one line: the candidate's error, else its failed
    checks' reasons (``name: reason; ...``); empty when there is none."""
    if c.candidate_error:
        return f"error: {c.candidate_error}"
    # the checks' own reasons first: the JSON answer field's is the same fault said once more
    return "; ".join(f"{name}: {why}" for name, why in sorted(c.reasons.items(), key=lambda kv: kv[0] == "output_field"))

def _short(text: str | None, width: int = 70) -> str:
    if text is None:
        return "(error)"
    t = " ".join(text.split())
    return t if len(t) <= width else t[: width - 1] + "…"

def gate_rule_text(cmp: Comparison) -> str:
    """The rule in one sentence, as the table applied it."""
    text = _rule_sentence(cmp)
    if any(not m.higher_is_better for m in cmp.metrics):
        text += (" Costs, latencies and token counts are lower-is-better: the same test on a rise beyond max_increase "
                 "(or max_increase_pct of the baseline).")
    return text

def sequential_lines(cmp: Comparison) -> list[str]:
    """For a sequential run: where it stopped (``decided after 140 of 810
    cases (83% of model calls saved): token_f1 regressed``) and how many
    cases were not needed; empty otherwise."""
    s = cmp.sequential
    if not s:
        return []
    lines = [s["headline"]]
    if s["not_needed"]:
        lines.append(f"{len(s['not_needed']):,} cases not needed: never called (not failures; "
                     "listed in the run record)")
    return lines


def _rule_sentence(cmp: Comparison) -> str:
    if cmp.sequential:
        s = cmp.sequential
        k = len(s["metrics"])
        split = f", Bonferroni over {k} gated metrics" if k > 1 and cmp.correction != "none" else ""
        undecided = ("an undecided one is unproven" if cmp.mode == "strict"
                     else "one still undecided when the cases run out passes (not shown to regress)")
        return (f"sequential {cmp.mode} mode: cases answered in a seeded random order, {s['looks']} looks; a metric "
                f"regresses when its {cmp.confidence:.0%} anytime-valid confidence sequence of candidate − baseline "
                f"(Waudby-Smith & Ramdas 2024, betting{split}; "
                f"{'this eval set' if s['population'] == 'eval_set' else 'the population of cases'}) lies wholly "
                f"below −max_drop, and is within the rule when wholly above; {undecided}. The CI column is the "
                "sequence; p is its anytime-valid p-value.")
    if cmp.mode == "plain":
        return "plain mode: a metric regresses when candidate − baseline < −max_drop, or candidate < min."
    how = ("interval delta ± t·SE with n − 1 df (G − 1 clusters): the paired SE for means"
           f"{' (cluster-robust, clustered by ' + cmp.cluster + ')' if cmp.cluster else ''}, "
           f"a {cmp.resamples}-resample paired bootstrap for BLEU and quantiles")
    exact = any(m.discordant is not None for m in cmp.tests)
    if cmp.mode == "strict":
        return (f"strict mode: a metric passes only when the {cmp.confidence:.0%} CI of candidate − baseline "
                f"lies above −max_drop ({how}), and candidate ≥ min over the whole run.")
    holm = (f"; Holm-corrected over {cmp.family_size} gated metrics (p and CI adjusted)"
            if cmp.correction == "holm" and cmp.family_size > 1 else "")
    return (f"paired mode: a metric regresses when the {cmp.confidence:.0%} CI of candidate − baseline "
            f"lies wholly below −max_drop ({how}{holm}), or candidate < min over the whole run"
            + ("; a pass/fail metric is decided by McNemar's exact test on the cases that changed (Tango's score test "
               "with a margin)" if exact else "") + ". MDE: the drop caught with 80% probability under this rule.")

def usage_line(u) -> str:
    """Calls, cache, tokens, USD, errors, retries, the most calls in flight,
    the 429s seen and the answers per deployment, on one line."""
    cost = f"${u.cost_usd:.4f}" if u.cost_usd is not None else "n/a"
    line = (f"calls {u.calls} · cache {u.cache_hits} hit / {u.cache_misses} miss · tokens {u.prompt_tokens} in / "
            f"{u.completion_tokens} out · cost {cost} · errors {u.errors} · retries {u.retries}")
    if u.concurrency_peak:
        line += f" · in flight ≤ {u.concurrency_peak}"
    if u.congestion:
        line += f" · 429s {u.throttled}" + (f" (+{u.congestion - u.throttled} 503/timeouts)" if u.congestion > u.throttled else "")
    if getattr(u, "deployments", None):
        line += " · answered by " + ", ".join(f"{label} {n}" for label, n in u.deployments.items())
    return line

def slice_cell(m: MetricComparison) -> str:
    """One slice's result for one metric: ``candidate (delta ± half-width)``,
    the half-width of the interval the verdict used (it is symmetric), and
    the verdict when a rule targets the slice."""
    if m.candidate is None:
        return "—"
    text = fmt(m.candidate, m.scale, unit=m.unit)
    if m.delta is not None and m.ci_high is not None and m.ci_low is not None:
        text += f" ({fmt(m.delta, m.scale, True, m.unit)} ± {fmt((m.ci_high - m.ci_low) / 2, m.scale, unit=m.unit)})"
    if m.verdict != "info":
        text += f" {m.verdict}"
    return text

def slice_tables(cmp: Comparison) -> dict[str, tuple[list[str], list[tuple[str, int, list[MetricComparison | None]]]]]:
    """Per slice field: the metrics (columns) and, per value, ``(value, cases,
    one comparison per metric)`` — the layout of the per-slice tables."""
    out: dict[str, tuple[list[str], dict[str, dict[str, MetricComparison]]]] = {}
    for m in cmp.slices:
        assert m.slice is not None  # cmp.slices holds per-slice comparisons only
        field, _, value = m.slice.partition("=")
        metrics, rows = out.setdefault(field, ([], {}))
        if m.metric not in metrics:
            metrics.append(m.metric)
        rows.setdefault(value, {})[m.metric] = m
    return {f: (metrics, [(v, max(c.n for c in row.values()), [row.get(x) for x in metrics]) for v, row in rows.items()])
            for f, (metrics, rows) in out.items()}
