"""``perplexity``: the perplexity of each output under the model that
answered it, from the token log-probabilities the provider returned with the
answer. Dimensionless, at least 1 (1: every output token was certain); lower
is better.

Definition (Jelinek, Mercer, Bahl & Baker 1977, "Perplexity — a measure of
the difficulty of speech recognition tasks", JASA 62(S1); in the form of
Hugging Face's "Perplexity of fixed-length models",
https://huggingface.co/docs/transformers/perplexity): for the output tokens
x_1 … x_t, each conditioned on the prompt and the tokens before it,

    PPL = exp(−(1/t) · Σ_i log p(x_i | prompt, x_<i))      (natural logs)

Per call: ``exp(−logprob_sum / logprob_tokens)`` (the fields of
:class:`~llmops_cli.record.schema.Call`); per case: the mean over its answered calls
(repeats); aggregate: the mean over the scored cases (a mean of per-case
perplexities, not the perplexity of all tokens pooled).

The log-probabilities are asked for (OpenAI's ``logprobs: true`` with
``top_logprobs: 0`` — llama.cpp's server answers none without the latter —,
which LiteLLM drops for providers that do not take them) only when the metric is
configured, so other configs keep their cache keys. An answer without them —
the provider returned none, or the outputs were made elsewhere (``llmops
score``) — is unscored (None, never 0), and the case's
``reasons["perplexity"]`` says why. Perplexities under different models
(different tokenizers) are not comparable: the summary names the model.
"""

from __future__ import annotations

import math
from typing import Any

from llmops_cli.record.schema import Call, CaseRecord, MetricSummary
from llmops_cli.measure.scorers import mean

NAME = "perplexity"
NO_LOGPROBS = "the provider returned no token log-probabilities (logprobs: true was asked for)"
FROM_FILE = "outputs made elsewhere carry no token log-probabilities"
NO_TOKENS = "the answer has no tokens, so no perplexity"


def call_perplexity(call: Call) -> float | None:
    """``exp(−logprob_sum / logprob_tokens)`` of an answered call, or None
    (failed call, no log-probabilities, no tokens, or beyond a float)."""
    if call.error is not None or call.logprob_sum is None or not call.logprob_tokens:
        return None
    try:
        return math.exp(-call.logprob_sum / call.logprob_tokens)
    except OverflowError:
        return None


def _reason(calls: list[Call], source: str) -> str:
    if source != "model":
        return FROM_FILE
    return NO_TOKENS if any(c.logprob_tokens == 0 for c in calls) else NO_LOGPROBS


def score_perplexity(records: list[CaseRecord], model: str | None, source: str = "model") -> MetricSummary:
    """Fill ``CaseRecord.scores["perplexity"]`` (the mean over the case's
    answered calls; None when none has log-probabilities, with the reason in
    ``reasons["perplexity"]``) and return the summary
    (:func:`perplexity_summary`). ``source``: the record's (``outputs`` for
    answers scored from a file). A case that failed is unscored without a
    reason here (its error says why)."""
    for r in records:
        answered = [c for c in r.calls if c.error is None]
        value = mean([p for c in answered if (p := call_perplexity(c)) is not None])
        r.scores[NAME] = value
        if value is None and answered:
            r.reasons[NAME] = _reason(answered, source)
    return perplexity_summary(records, model)


def perplexity_summary(records: list[CaseRecord], model: str | None) -> MetricSummary:
    """The summary of ``perplexity`` over ``records`` (scored already): the
    mean over scored cases; ``info`` names the answering ``model``, counts
    the output ``tokens`` scored and, when answered cases went unscored, how
    many (``answered_unscored``) and why (``reason``, one line: the most
    common reason, the first seen on a tie). Used by a run and by a merge of
    shards (:mod:`llmops_cli.jobs.merge`)."""
    per_case = [r.scores.get(NAME) for r in records]
    missing = [r.reasons[NAME] for r, v in zip(records, per_case) if v is None and NAME in r.reasons]
    tokens = sum(c.logprob_tokens or 0 for r in records for c in r.calls if call_perplexity(c) is not None)
    scored = sum(v is not None for v in per_case)
    info: dict[str, Any] = {"unit": "ppl", "model": model, "tokens": tokens}
    if missing:
        info["answered_unscored"] = len(missing)
        info["reason"] = f"{len(missing)} of {len(records)} cases unscored: {max(dict.fromkeys(missing), key=missing.count)}"
    return MetricSummary(aggregate=mean(per_case), scale=1.0, n_scored=scored, n_unscored=len(per_case) - scored,
                         info=info)
