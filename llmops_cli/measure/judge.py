"""LLM-as-judge scorers: correctness, rubric, faithfulness.

The judge reasons first and ends with a verdict line (``GRADE: C|P|I``, or
``SCORE: n`` for rubrics); the *last* such line counts (as in Inspect AI's
model-graded scorers). A reply without a parsable verdict is **unscored** —
kept with the judge's raw text, excluded from the aggregate, and counted —
never 0 or 1.

Injection resistance: the graded answer is fenced as data between markers
named by a hash of the answer itself (so the answer cannot contain its own
closing marker), and verdict-like lines and marker-like tags inside it are
neutralised before it reaches the judge, so an answer that says
``GRADE: C`` cannot produce that verdict even if the judge parrots it.

``samples: k`` asks the judge k times (one cache entry per sample) and reduces
by majority (grades; ties go to the lower grade) or mean; the per-case
agreement and spread are recorded.

Also planning the judge calls (:func:`judge_requests`) and reducing their
replies into the run record (:func:`apply_judges`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from llmops_cli.config import Config, Judge
from llmops_cli.plan.dataset import input_text
from llmops_cli.core.errors import ConfigError
from llmops_cli.plan.requests import Plan, Request
from llmops_cli.plan.prompt import check_template, probe_sandbox, render
from llmops_cli.run.provider import Endpoint
from llmops_cli.record.schema import CaseRecord, JudgeResult, JudgeSample, MetricSummary
from llmops_cli.record.usage import usage_of
from llmops_cli.measure.scorers import mean

GRADE_VALUES = {"C": 1.0, "P": 0.5, "I": 0.0}
_GRADE_LINE = re.compile(r"^[\s*_#>`]*GRADE\s*:\s*[*_`\s]*([CPI])[\s*_`.]*$", re.IGNORECASE)
_SCORE_LINE = re.compile(r"^[\s*_#>`]*SCORE\s*:\s*[*_`\s]*(-?\d+)\s*(?:/\s*\d+)?[\s*_`.]*$", re.IGNORECASE)
_VERDICT_WORD = re.compile(r"(?<![A-Za-z0-9])(GRADE|SCORE)(\s*):", re.IGNORECASE)  # "_GRADE:" too
_TAG_LIKE = re.compile(r"<(/?)\s*(data-|answer|passages?|question)", re.IGNORECASE)


def template_text(judge: Judge, cfg: Config | None = None, name: str = "") -> str:
    """The judge's Jinja2 template: ``template_file`` (relative to the config)
    or the packaged one for its type. Raises :class:`ConfigError`."""
    if judge.template_file:
        path = cfg.resolve(judge.template_file) if cfg else Path(judge.template_file)
        key = f"judges.{name}.template_file"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(cfg.path if cfg else path, key, f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        check_template(text, cfg.path if cfg and cfg.path else path, key)
        # rendered only once the answers are in: meet the sandbox now, before any model call
        probe_sandbox(text, {"input": "?", "answer": "?", "fence": fence_for("?"), "references": ["?"],
                             "chunks": [{"id": "?", "doc_id": "?", "text": "?", "score": 0.0}],
                             "criteria": judge.criteria or "", "scale_min": judge.scale[0], "scale_max": judge.scale[1]},
                      cfg.path if cfg and cfg.path else path, key)
        return text
    return resources.files("llmops_cli.measure").joinpath("templates", f"{judge.type}.j2").read_text(encoding="utf-8")


def judge_template(cfg: Config, name: str) -> str:
    """Judge ``name``'s template (:func:`template_text`), read once and kept on
    ``cfg`` (so :meth:`Config.judge_template` and the fingerprint see it).
    Raises :class:`ConfigError`."""
    text = cfg._judge_templates.get(name)
    if text is None:
        text = template_text(cfg.judges[name], cfg, name)
        cfg._judge_templates = {**cfg._judge_templates, name: text}
    return text


def fence_for(answer: str) -> str:
    """The data marker for ``answer``: derived from its own hash, so the answer
    cannot contain the closing marker."""
    return "data-" + hashlib.sha256(answer.encode("utf-8")).hexdigest()[:12]


def neutralise(text: str) -> str:
    """Make verdict-like lines (``GRADE:`` / ``SCORE:``) and marker-like tags
    in graded text inert: a zero-width joiner breaks the keyword, ``<`` before
    a marker-like word becomes ``‹``."""
    text = _VERDICT_WORD.sub(lambda m: m.group(1)[0] + "\u200d" + m.group(1)[1:] + m.group(2) + ":", text)
    return _TAG_LIKE.sub(lambda m: "‹" + m.group(1) + m.group(2), text)



def judge_messages(judge: Judge, template: str, inputs: dict[str, Any], answer: str, references: list[str],
                   chunks: list[dict[str, Any]], path: str | Path, name: str) -> list[dict[str, str]]:
    """Render the judge prompt for one answer: ``[{"role": "user", ...}]``."""
    variables = {
        "input": neutralise(input_text(inputs)), "answer": neutralise(answer), "fence": fence_for(answer),
        "references": [neutralise(r) for r in references],
        "chunks": [{**c, "text": neutralise(c["text"])} for c in chunks],
        "criteria": judge.criteria or "", "scale_min": judge.scale[0], "scale_max": judge.scale[1],
    }
    return [{"role": "user", "content": render(template, variables, path, f"judges.{name}")}]


def parse_verdict(reply: str | None, judge: Judge) -> tuple[str | None, float | None]:
    """``(verdict, value)`` from the *last* verdict line of ``reply``, or
    ``(None, None)`` when there is none (unscored). Grades map C/P/I →
    1/0.5/0; rubric scores map to (s − lo) / (hi − lo) and must lie in the
    scale."""
    if not reply:
        return None, None
    pattern = _SCORE_LINE if judge.type == "rubric" else _GRADE_LINE
    for line in reversed(reply.splitlines()):
        m = pattern.match(line)
        if not m:
            continue
        if judge.type == "rubric":
            s = int(m.group(1))
            lo, hi = judge.scale
            if not lo <= s <= hi:
                return None, None
            return str(s), (s - lo) / (hi - lo)
        g = m.group(1).upper()
        return g, GRADE_VALUES[g]
    return None, None


def reduce_samples(verdicts: list[tuple[str | None, float | None]], how: str) -> dict[str, Any]:
    """Reduce k parsed samples of one case.

    Returns ``{verdict, value, agreement, spread, n_parsed}``: ``verdict`` is
    the most common one (ties: the lower), ``value`` its value (majority) or
    the mean of the values (mean); ``agreement``
    is the share of parsed samples equal to the most common verdict (1.0 =
    the judge agreed with itself), ``spread`` max − min of the values.
    All samples unscored → ``value`` None."""
    parsed = [(v, x) for v, x in verdicts if v is not None and x is not None]
    if not parsed:
        return {"verdict": None, "value": None, "agreement": None, "spread": None, "n_parsed": 0}
    counts = Counter(v for v, _ in parsed)
    top = max(counts.values())
    values = {v: x for v, x in parsed}
    verdict = min((v for v, n in counts.items() if n == top), key=lambda v: values[v])  # modal; ties: the lower
    value = values[verdict] if how == "majority" else sum(x for _, x in parsed) / len(parsed)
    xs = [x for _, x in parsed]
    return {"verdict": verdict, "value": value, "agreement": top / len(parsed), "spread": max(xs) - min(xs), "n_parsed": len(parsed)}


def default_reduce(judge: Judge) -> str:
    return judge.reduce or ("mean" if judge.type == "rubric" else "majority")


# -- planning judge calls and reducing their verdicts ----------------------------------

def judge_endpoint(cfg: Config, name: str) -> Endpoint:
    """A judge's endpoint; model/api_base/key default to the model under
    test's (:meth:`Config.judge_target`), and so do its deployments when it
    pins neither model nor api_base (:meth:`Config.judge_uses_deployments`)."""
    from llmops_cli.run.deployments import targets

    routes = targets(cfg) if cfg.judge_uses_deployments(name) else ()
    return Endpoint.of(*cfg.judge_target(name), cfg.judges[name].params, deployments=routes)


def judge_requests(cfg: Config, plan: Plan, records: list[CaseRecord]) -> list[Request]:
    """Judge calls for every judged output: judges × cases × repeats × samples
    (a failed or empty answer is not judged). Raises ConfigError for an
    unreadable template override."""
    out = []
    path = cfg.path or "<config>"
    for name, judge in cfg.judges.items():
        template = judge_template(cfg, name)
        ep = judge_endpoint(cfg, name)
        for i, rec in enumerate(records):
            chunks = plan.chunk_vars[i].get("chunks", []) if plan.chunk_vars else []
            for call in rec.calls:
                if call.error is not None or call.output is None:
                    continue
                msgs = judge_messages(judge, template, rec.inputs, call.output, rec.references, chunks, path, name)
                for k in range(judge.samples):
                    ep_k = ep.for_sample(k)
                    out.append(Request(i, call.repeat, msgs, ep_k.key(msgs, k), ep_k, judge=name, sample=k))
    return out


def apply_judges(cfg: Config, records: list[CaseRecord], jreqs: list[Request]) -> dict[str, MetricSummary]:
    """Parse and reduce judge replies into ``CaseRecord.judges`` and
    ``.scores``; returns one summary per judge (:func:`judge_summary`) whose
    ``info`` starts with the effective ``model``, ``api_base`` and
    ``template_sha256`` that graded (:meth:`Config.effective_judge`)."""
    grouped: dict[tuple[str | None, int, int], list[Request]] = {}
    for r in jreqs:
        grouped.setdefault((r.judge, r.case_index, r.repeat), []).append(r)
    summaries = {}
    for name, judge in cfg.judges.items():
        how = default_reduce(judge)
        for i, rec in enumerate(records):
            results = []
            for rep in sorted({c.repeat for c in rec.calls if c.error is None}):
                samples = []
                for r in sorted(grouped.get((name, i, rep), []), key=lambda r: r.sample):
                    assert r.call is not None  # execute() answers every judge request (no early stop for judges)
                    verdict, value = parse_verdict(r.call.output if r.call.error is None else None, judge)
                    samples.append(JudgeSample(**r.call.model_dump(exclude={"repeat"}), repeat=rep, sample=r.sample,
                                               verdict=verdict, value=value))
                red = reduce_samples([(s.verdict, s.value) for s in samples], how)
                results.append(JudgeResult(verdict=red["verdict"], value=red["value"], agreement=red["agreement"],
                                           spread=red["spread"], samples=samples))
            rec.judges[name] = results
            rec.scores[name] = mean([r.value for r in results])
        eff = cfg.effective_judge(name)
        summaries[name] = judge_summary(name, records, {
            "judge": True, "type": judge.type, "model": eff["model"], "api_base": eff["api_base"],
            "template_sha256": eff["template_sha256"], "samples": judge.samples, "reduce": how})
    return summaries


JUDGE_SETTINGS = ("judge", "type", "model", "api_base", "template_sha256", "samples", "reduce")  # info from the config


def judge_calls(records: list[CaseRecord], names: list[str]) -> list[JudgeSample]:
    """Every judge call recorded in ``records`` for the judges ``names``, in
    the order they were planned (judge, case, repeat, sample)."""
    return [s for name in names for rec in records for res in rec.judges.get(name, []) for s in res.samples]


def judge_summary(name: str, records: list[CaseRecord], settings: dict[str, Any]) -> MetricSummary:
    """The summary of judge ``name`` over ``records`` (judged already): the
    mean of the cases' values; ``info``: ``settings`` (the keys
    :data:`JUDGE_SETTINGS`, from the config), then ``unparsed_samples``,
    ``error_samples``, ``total_samples``, ``self_agreement`` (mean share of
    a case's parsed samples agreeing with its verdict, over cases with more
    than one parsed sample; None without any), ``disagreement_rate`` (share
    of those cases not unanimous), and the judge's ``prompt_tokens``,
    ``completion_tokens`` and ``cost_usd`` (USD). Used by a run and by a
    merge of shards (:mod:`llmops_cli.jobs.merge`)."""
    agreements: list[float] = []
    for rec in records:
        for res in rec.judges.get(name, []):
            parsed = sum(s.verdict is not None and s.value is not None for s in res.samples)
            if res.agreement is not None and parsed > 1:
                agreements.append(res.agreement)
    samples = judge_calls(records, [name])
    per_case = [rec.scores.get(name) for rec in records]
    scored = sum(v is not None for v in per_case)
    u = usage_of([], 0.0, samples)
    return MetricSummary(
        aggregate=mean(per_case), scale=1.0, n_scored=scored, n_unscored=len(per_case) - scored,
        info={**settings, "unparsed_samples": sum(s.verdict is None for s in samples),
              "error_samples": sum(s.error is not None for s in samples), "total_samples": len(samples),
              "self_agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
              "disagreement_rate": round(sum(a < 1 for a in agreements) / len(agreements), 4) if agreements else None,
              "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "cost_usd": u.cost_usd},
    )
