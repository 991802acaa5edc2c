"""Reference-based scorers, registered by name.

Every scorer takes the run's outputs (``None`` for a case that failed) and
each case's references, and returns a :class:`MetricResult`: one score per case
(``None`` where the case cannot be scored) and the aggregate.

Registered names and scales:

* ``exact_match``, ``token_f1`` — the SQuAD v1.1 definitions (Rajpurkar et al.
  2016, official ``evaluate-v1.1.py``): lowercase, drop punctuation and the
  articles a/an/the, collapse whitespace; best over references. 0–1;
  aggregate is the mean over scored cases.
* ``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum`` — F-measure from Google's
  ``rouge-score`` package (Lin 2004), Porter stemming on, best over references
  (``RougeScorer.score_multi``). 0–1; aggregate is the mean.
* ``bleu`` — ``sacrebleu`` (Post 2018). Aggregate: corpus BLEU, 0–100, from
  summed sentence sufficient statistics (``stats``), default 13a tokenizer and
  exp smoothing; its signature is stored. Per case: sentence BLEU with
  effective order, 0–100, for diffs only.
"""

from __future__ import annotations

import math
import re
import string
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

Outputs = Sequence[str | None]
References = Sequence[Sequence[str]]


@dataclass
class MetricResult:
    """Scores of one metric over a run.

    ``per_case[i]`` is case i's score or ``None`` (unscored: the case errored
    or has no reference). ``stats`` holds per-case sufficient statistics for
    corpus-level metrics (BLEU) so that resampling can recompute the
    aggregate; ``info`` holds e.g. the sacrebleu signature."""

    name: str
    per_case: list[float | None]
    aggregate: float | None
    scale: float = 1.0
    stats: list[list[float] | None] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scorer:
    """A registered scorer. ``fn(outputs, references) -> MetricResult``.
    ``from_stats`` recomputes a corpus aggregate from summed ``stats`` (None
    for mean-aggregated metrics). ``scale`` is the top of the score range.
    ``worst`` is the score a case the candidate failed counts as in the gate
    (the bottom of the range), ``worst_stats(references)`` its sufficient
    statistics for corpus metrics (an empty answer).

    ``external``: scored outside :func:`score_all` (from model calls or the
    calls' own measurements: ``semantic_similarity``, the operational
    metrics, ``perplexity``). ``higher_is_better``: False for costs, times,
    token counts and perplexity — gated with ``max_increase`` or
    ``max_increase_pct`` instead of ``max_drop``; such metrics have no worst
    value (``worst`` is None): a case that failed counts with what it
    measured (a failed call's latency, its tokens and cost, usually 0).
    ``quantile``: the aggregate is this quantile (0–1) of the per-case values
    instead of their mean (``latency_p95``). ``unit``: what the values
    count (``USD``, ``s``, ``tokens``, ``ppl`` for perplexity; empty for
    0–scale scores). ``sequential``: the scorer declares that each case's
    score lies in [0, ``scale``] and that the aggregate is their mean, so the
    sequential gate may decide it case by case
    (:mod:`llmops_cli.gate.sequential_rules`); corpus scores, quantiles and
    unbounded measurements may not. ``binary``: every case scores 0 or 1 (pass/fail, as
    ``exact_match``): the gate tests it with McNemar's exact test on the
    discordant pairs (:mod:`llmops_cli.gate.exact`)."""

    name: str
    fn: Callable[[Outputs, References], MetricResult]
    scale: float = 1.0
    from_stats: Callable[[Sequence[float]], float] | None = None
    description: str = ""
    worst: float | None = 0.0
    worst_stats: Callable[[Sequence[str]], list[float]] | None = None
    external: bool = False
    higher_is_better: bool = True
    quantile: float | None = None
    unit: str = ""
    sequential: bool = False
    binary: bool = False


SCORERS: dict[str, Scorer] = {}


def register(name: str, scale: float = 1.0, from_stats=None, description: str = "", worst: float | None = 0.0,
             worst_stats=None, external: bool = False, higher_is_better: bool = True, quantile: float | None = None,
             unit: str = "", sequential: bool = False, binary: bool = False):
    """Decorator: register ``fn`` under ``name`` (see :class:`Scorer` for the arguments)."""

    def deco(fn):
        SCORERS[name] = Scorer(name, fn, scale, from_stats, description, worst, worst_stats, external,
                               higher_is_better, quantile, unit, sequential, binary)
        return fn

    return deco


def get_scorer(name: str) -> Scorer:
    """Look up a registered scorer. Raises ``KeyError`` for unknown names."""
    return SCORERS[name]


def mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def answer_field(output: str, field: str) -> tuple[str, str | None]:
    """The text of ``field`` in a JSON answer, or ``("", reason)`` when the
    answer does not parse or has no such field: scored as an empty answer
    (the metric's worst value), never left out."""
    import json

    try:
        data = json.loads(output)
    except RecursionError:  # deeper than Python's JSON parser reads
        return "", f"not JSON (nested too deeply to read), so no field {field!r}"
    except ValueError as e:  # a JSONDecodeError, or a plain ValueError (an integer over sys.get_int_max_str_digits())
        why = f"{e.msg}, char {e.pos}" if isinstance(e, json.JSONDecodeError) else str(e)
        return "", f"not JSON ({why}), so no field {field!r}"
    if not isinstance(data, dict) or field not in data:
        return "", f"the JSON answer has no field {field!r}"
    value = data[field]
    return (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)), None


def _per_case(name: str, outputs: Outputs, references: References, fn: Callable[[str, Sequence[str]], float]) -> MetricResult:
    per = [None if o is None or not refs else fn(o, refs) for o, refs in zip(outputs, references)]
    return MetricResult(name, per, mean(per))


# -- SQuAD --------------------------------------------------------------

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 answer normalisation: lowercase, remove punctuation, remove
    articles (a, an, the), collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match_score(prediction: str, references: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(r) for r in references))


def _f1(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1_score(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token-overlap F1 (0–1), best over references."""
    p = normalize_answer(prediction).split()
    return max(_f1(p, normalize_answer(r).split()) for r in references)


@register("exact_match", description="SQuAD exact match, 0–1", sequential=True, binary=True)
def exact_match(outputs: Outputs, references: References) -> MetricResult:
    return _per_case("exact_match", outputs, references, exact_match_score)


@register("token_f1", description="SQuAD token F1, 0–1", sequential=True)
def token_f1(outputs: Outputs, references: References) -> MetricResult:
    return _per_case("token_f1", outputs, references, token_f1_score)


# -- ROUGE ----------------------------------------------------------------

ROUGE_STEMMER = True
_rouge_scorers: dict[str, Any] = {}


# Optional imports of the scoring libraries' dependencies that cost memory and that scoring never uses:
# NLTK (under rouge-score) tries SciPy in nltk.metrics, nltk.translate.gale_church and nltk.parse (62 MB of RSS
# and 0.5 s); portalocker (under sacrebleu and NLTK) tries redis for its RedisLock (6 MB).
LEAN_BLOCKED = ("scipy", "redis")


def import_lean(name: str):
    """Import module ``name`` (or return it, when loaded) with each package
    of :data:`LEAN_BLOCKED` that is not loaded yet made unimportable for the
    length of that import: ``sys.modules[pkg] = None``, the import system's
    documented way to make an import fail, so the libraries take their own
    ``except ImportError`` path. Those packages stay importable afterwards
    for whoever needs them (SciPy for statsmodels, redis for a Redis cache;
    one already loaded is not blocked)."""
    import importlib

    if name in sys.modules:
        return sys.modules[name]
    blocked = [pkg for pkg in LEAN_BLOCKED if pkg not in sys.modules]
    for pkg in blocked:
        sys.modules[pkg] = None  # type: ignore[assignment]
    from llmops_cli.core.imports import collector_paused

    try:
        with collector_paused():
            return importlib.import_module(name)
    finally:
        for pkg in blocked:
            if sys.modules.get(pkg, 0) is None:
                del sys.modules[pkg]


def _rouge(rouge_type: str):
    def fn(outputs: Outputs, references: References) -> MetricResult:
        if rouge_type not in _rouge_scorers:
            rouge_scorer = import_lean("rouge_score.rouge_scorer")
            _rouge_scorers[rouge_type] = rouge_scorer.RougeScorer([rouge_type], use_stemmer=ROUGE_STEMMER)
        scorer = _rouge_scorers[rouge_type]
        res = _per_case(rouge_type, outputs, references, lambda o, refs: scorer.score_multi(list(refs), o)[rouge_type].fmeasure)
        res.info = {"use_stemmer": ROUGE_STEMMER, "package": "rouge-score"}
        return res

    fn.__name__ = rouge_type
    return fn


for _t in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
    register(_t, description=f"{_t} F-measure (rouge-score, stemmed), 0–1", sequential=True)(_rouge(_t))


# -- BLEU -----------------------------------------------------------------

_bleu_objs: dict[str, Any] = {}


def _bleu_obj(kind: str):
    if kind not in _bleu_objs:
        BLEU = import_lean("sacrebleu.metrics").BLEU
        _bleu_objs[kind] = BLEU(effective_order=True) if kind == "sentence" else BLEU()
    return _bleu_objs[kind]


def bleu_from_stats(stats: Sequence[float]) -> float:
    """Corpus BLEU (0–100) from summed sacrebleu sufficient statistics
    ``[sys_len, ref_len, correct_1..4, total_1..4]``."""
    return float(_bleu_obj("corpus")._compute_score_from_stats(list(stats)).score)


def bleu_empty_stats(references: Sequence[str]) -> list[float]:
    """sacrebleu sufficient statistics of an empty answer against
    ``references``: no n-gram matched, length 0, and the reference length
    the case adds to the corpus (so a failed case lowers the brevity penalty
    as well as the precisions)."""
    corpus = _bleu_obj("corpus")
    return [float(x) for x in corpus._extract_corpus_statistics([""], [[r] for r in references])[0]]


@register("bleu", scale=100.0, from_stats=bleu_from_stats, description="sacrebleu corpus BLEU, 0–100",
          worst_stats=bleu_empty_stats)
def bleu(outputs: Outputs, references: References) -> MetricResult:
    idx = [i for i, (o, r) in enumerate(zip(outputs, references)) if o is not None and r]
    per: list[float | None] = [None] * len(outputs)
    stats: list[list[float] | None] = [None] * len(outputs)
    corpus = _bleu_obj("corpus")
    if not idx:
        return MetricResult("bleu", per, None, 100.0, None, {})
    hyps = [outputs[i] for i in idx]
    width = max(len(references[i]) for i in idx)
    ref_streams = [[references[i][k] if k < len(references[i]) else None for i in idx] for k in range(width)]
    seg_stats = corpus._extract_corpus_statistics(hyps, ref_streams)
    score = corpus._aggregate_and_compute(seg_stats).score
    sent = _bleu_obj("sentence")
    for j, i in enumerate(idx):
        per[i] = float(sent.sentence_score(hyps[j], list(references[i])).score)
        stats[i] = [float(x) for x in seg_stats[j]]
    info = {"signature": str(corpus.get_signature()), "package": "sacrebleu"}
    _forget_tokenized()
    return MetricResult("bleu", per, float(score), 100.0, stats, info)


def _forget_tokenized() -> None:
    """Empty sacrebleu's tokenizer memos: each tokenizer class memoises up to
    65,536 lines (``functools.lru_cache`` on ``__call__``), which kept every
    output and reference of a run, tokenized, after scoring (~4 entries per
    case: 7 MB of peak RSS at 10,000 short cases). Within one :func:`bleu` call
    the memo still serves the lines tokenized twice (sentence and corpus)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("sacrebleu.tokenizers.") and module is not None:
            for obj in vars(module).values():
                call = getattr(obj, "__call__", None) if isinstance(obj, type) else None  # noqa: B004  (the class's own __call__)
                if call is not None and hasattr(call, "cache_clear"):
                    call.cache_clear()


@register("semantic_similarity", description="cosine similarity of output and reference embeddings (embedding:), 0–1",
          external=True, sequential=True)
def semantic_similarity(outputs: Outputs, references: References) -> MetricResult:
    """Computed by :mod:`llmops_cli.measure.similarity` (it needs model calls), never here."""
    raise RuntimeError("semantic_similarity is scored by llmops_cli.measure.similarity")


@register("perplexity", description="perplexity of the output under the answering model, exp(−mean token log-prob); "
          "≥ 1, lower is better", worst=None, external=True, higher_is_better=False, unit="ppl")
def perplexity(outputs: Outputs, references: References) -> MetricResult:
    """Computed by :mod:`llmops_cli.measure.perplexity` from the calls' token log-probabilities, never here."""
    raise RuntimeError("perplexity is scored by llmops_cli.measure.perplexity")


def _measured_by_calls(outputs: Outputs, references: References) -> MetricResult:
    """Computed by :mod:`llmops_cli.measure.operational` from the calls, never here."""
    raise RuntimeError("operational metrics are measured by llmops_cli.measure.operational")


for _name, _unit, _q, _what in (
        ("cost_usd", "USD", None, "USD per case (LiteLLM's price map), summed over its calls"),
        ("latency_s", "s", None, "seconds per answer, mean over cases (a cached answer: its first latency)"),
        ("latency_p95", "s", 0.95, "seconds per answer, 95th percentile over cases"),
        ("prompt_tokens", "tokens", None, "prompt tokens per case, summed over its calls"),
        ("completion_tokens", "tokens", None, "completion tokens per case, summed over its calls")):
    register(_name, description=f"{_what}; lower is better", worst=None, external=True, higher_is_better=False,
             quantile=_q, unit=_unit)(_measured_by_calls)


def score_all(names: Sequence[str], outputs: Outputs, references: References) -> dict[str, MetricResult]:
    """Run the named scorers. Raises ``KeyError`` for an unknown name."""
    return {n: SCORERS[n].fn(outputs, references) for n in names}


def quantile(values: Sequence[float], q: float) -> float:
    """The inverted-CDF ``q``-quantile (0–1) of ``values``: the smallest value
    whose empirical CDF reaches ``q`` (Hyndman & Fan 1996, definition 1;
    numpy's ``method="inverted_cdf"``). Pure Python (a cached run needs no
    numpy). Raises ``ValueError`` when empty."""
    if not values:
        raise ValueError("quantile of no values")
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v) - 1e-9) - 1)]


def aggregate(name: str, per_case: Sequence[float | None], stats: Sequence[Sequence[float] | None] | None = None) -> float | None:
    """The aggregate of ``name`` over the given cases: corpus score from summed
    ``stats`` for corpus metrics (BLEU), else the mean of the scored cases."""
    sc = SCORERS[name]
    if sc.from_stats is not None and stats is not None:
        rows = [s for s in stats if s is not None]
        if not rows:
            return None
        return sc.from_stats([sum(col) for col in zip(*rows)])
    return mean(per_case)
