"""What a run will cost, before it runs: the calls it will make (answers and
judges, cached or new), their prompt tokens, an upper bound of their
completion tokens and the cost range in US dollars — shown by ``llmops
validate`` and checked against ``--max-cost`` before the first call.

* **calls** — the plan's answer requests (:func:`llmops_cli.plan.make_plan`),
  each cached or new (the cache is read, nothing is called); the judge calls
  are judges × answered calls × samples: for an answer already cached the
  judge's request is built exactly and looked up in the cache too; for a new
  answer it is new.
* **prompt tokens** — LiteLLM's ``token_counter`` on each new request's
  messages (the model's own tokenizer where LiteLLM has it, else tiktoken's
  ``cl100k_base``). A judge of an answer not made yet is counted with an
  empty answer (the lower bound) and with ``max_tokens`` more (the upper).
* **completion tokens** — at most ``max_tokens`` per new call (the model's
  or the judge's ``params.max_tokens``; unset: the model's
  ``max_output_tokens`` in LiteLLM's model map, else unbounded).
* **cost** — LiteLLM's price map (``cost_per_token``, the same prices that
  price the run's calls): the lower bound prices the prompt tokens alone (an
  answer of no tokens), the upper bound adds every completion at its
  ``max_tokens``. A model with no price in the map makes the range unknown
  (None), never 0; the embedded model (``local/…``) costs 0. Cached answers
  cost nothing.

LiteLLM is imported only when some call is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmops_cli.core.errors import InputError

if TYPE_CHECKING:
    from llmops_cli.core.cache import Cache
    from llmops_cli.config import Config
    from llmops_cli.plan.requests import Plan


@dataclass
class CallGroup:
    """The calls of one kind (``what``: ``answers`` or ``judge <name>``) to
    one ``model``: ``calls`` in all, ``cached`` of them from the cache; for
    the new ones ``prompt_tokens`` (lower, upper), ``completion_tokens`` at
    most (None: unbounded) and ``cost_usd`` (lower, upper; None: no price)."""

    what: str
    model: str
    calls: int = 0
    cached: int = 0
    prompt_tokens: tuple[int, int] = (0, 0)
    completion_tokens: int | None = 0
    cost_usd: tuple[float | None, float | None] = (0.0, 0.0)

    @property
    def new(self) -> int:
        return self.calls - self.cached


@dataclass
class CostEstimate:
    """The run's calls by group (:class:`CallGroup`) and their total cost
    range in USD (``low``/``high``: None when some new call has no price, or
    ``high`` when some completion is unbounded)."""

    groups: list[CallGroup] = field(default_factory=list)

    @property
    def low(self) -> float | None:
        return _total(g.cost_usd[0] for g in self.groups)

    @property
    def high(self) -> float | None:
        return _total(g.cost_usd[1] for g in self.groups)

    @property
    def unpriced(self) -> list[str]:
        """The models of new calls LiteLLM has no price for."""
        return sorted({g.model for g in self.groups if g.new and g.cost_usd[0] is None})

    def lines(self) -> list[str]:
        """The estimate as lines of text, one per group and the total."""
        out = []
        for g in self.groups:
            p = g.prompt_tokens
            ptxt = f"{p[0]:,}" if p[0] == p[1] else f"{p[0]:,}–{p[1]:,}"
            ctxt = "unbounded" if g.completion_tokens is None else f"≤ {g.completion_tokens:,}"
            out.append(f"{g.what} ({g.model}): {g.calls:,} calls, {g.cached:,} cached, {g.new:,} new; "
                       f"prompt tokens {ptxt}, completion tokens {ctxt}; cost {_range(*g.cost_usd)}")
        out.append(f"estimated cost of the new calls: {_range(self.low, self.high)}"
                   + (f" (no price for {', '.join(self.unpriced)} in LiteLLM's price map)" if self.unpriced else ""))
        return out


def _total(values) -> float | None:
    total = 0.0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def _usd(x: float | None) -> str:
    if x is None:
        return "unknown"
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None and abs(high - low) < 5e-5:
        return _usd(low)
    return f"{_usd(low)} – {_usd(high)}"


def _prices(litellm, model: str) -> tuple[float, float] | None:
    """(USD per prompt token, USD per completion token) from LiteLLM's price
    map; (0, 0) for the embedded model; None when the map has no price."""
    if model.startswith("local/"):
        return 0.0, 0.0
    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=1_000_000)
    except Exception:  # LiteLLM's "This model isn't mapped yet" and the like
        return None
    return p / 1_000_000, c / 1_000_000


def _max_tokens(litellm, model: str, params) -> int | None:
    if params.max_tokens is not None:
        return int(params.max_tokens)
    try:
        info = litellm.get_model_info(model)
    except Exception:
        return None
    value = info.get("max_output_tokens") or info.get("max_tokens")
    return int(value) if isinstance(value, int) else None


def _count(litellm, model: str, messages: list[dict[str, Any]]) -> int:
    try:
        return int(litellm.token_counter(model=model, messages=messages))
    except Exception:  # a model LiteLLM cannot tokenize for: its default tokenizer
        return int(litellm.token_counter(messages=messages))


def _priced(group: CallGroup, prices, max_tokens: int | None) -> None:
    """Fill ``group.completion_tokens`` and ``cost_usd`` from its new calls' prompt tokens."""
    group.completion_tokens = None if max_tokens is None else group.new * max_tokens
    if prices is None:
        group.cost_usd = (None, None)
        return
    low = group.prompt_tokens[0] * prices[0]
    high = None if group.completion_tokens is None else group.prompt_tokens[1] * prices[0] + group.completion_tokens * prices[1]
    group.cost_usd = (low, high)


def estimate_run(cfg: Config, plan: Plan, cache: Cache | None, *, refresh: bool = False) -> CostEstimate:
    """The calls ``plan`` (made with prompts) will make and what the new ones
    cost (see the module docstring). ``refresh``: nothing counts as cached.
    Reads ``cache``; calls nothing."""
    from llmops_cli.measure.judge import judge_endpoint, judge_messages, judge_template

    hits = {}
    for r in plan.requests:
        hit = cache.get(r.key) if cache is not None and not refresh else None
        hits[id(r)] = hit
    est = CostEstimate()
    new_answers = [r for r in plan.requests if hits[id(r)] is None]
    litellm = None
    if new_answers or cfg.judges:
        from llmops_cli.run.provider import import_litellm

        litellm = import_litellm()
    ep = plan.requests[0].endpoint if plan.requests else None
    answers = CallGroup("answers", cfg.model, calls=len(plan.requests), cached=len(plan.requests) - len(new_answers))
    answer_max = _max_tokens(litellm, cfg.model, cfg.params) if litellm is not None else None
    if new_answers:
        assert ep is not None  # there are requests
        n: int = sum(_count(litellm, ep.model, r.messages) for r in new_answers)
        answers.prompt_tokens = (n, n)
        _priced(answers, _prices(litellm, cfg.model), answer_max)
    est.groups.append(answers)
    path = cfg.path or "<config>"
    for name, judge in cfg.judges.items():
        jep = judge_endpoint(cfg, name)
        template = judge_template(cfg, name)
        group = CallGroup(f"judge {name}", jep.model)
        low = high = 0
        for r in plan.requests:
            case = plan.cases[r.case_index]
            chunks = plan.chunk_vars[r.case_index].get("chunks", []) if plan.chunk_vars else []
            hit = hits[id(r)]
            answer = hit.get("output") if hit is not None else None
            if hit is not None and answer is None:
                continue  # a cached answer that is empty is not judged
            msgs = judge_messages(judge, template, case.inputs, answer or "", case.references, chunks, path, name)
            for k in range(judge.samples):
                group.calls += 1
                ep_k = jep.for_sample(k)
                if hit is not None and not refresh and cache is not None and cache.get(ep_k.key(msgs, k)) is not None:
                    group.cached += 1
                    continue
                n = _count(litellm, jep.model, msgs)
                low += n
                high += n + (0 if hit is not None else (answer_max or 0))
        group.prompt_tokens = (low, high)
        _priced(group, _prices(litellm, jep.model), _max_tokens(litellm, jep.model, judge.params))
        if answer_max is None and new_answers:  # a judge of an answer of unbounded length: no upper bound
            group.cost_usd = (group.cost_usd[0], None)
        est.groups.append(group)
    return est


def check_before_run(estimate: CostEstimate, max_usd: float, where: str) -> None:
    """Refuse a run the budget cannot hold, before any call.

    Raises:
        InputError: (exit 2, naming ``where`` and ``--max-cost``) a new
            call's model has no price in LiteLLM's price map, or the
            estimate's lower bound exceeds ``max_usd``."""
    if estimate.unpriced:
        raise InputError(where, "--max-cost", f"LiteLLM has no price for {', '.join(estimate.unpriced)}, so the "
                         f"spend cannot be held to ${max_usd:g}")
    low = estimate.low or 0.0
    if low > max_usd:
        raise InputError(where, "--max-cost", f"the run costs at least ${low:.4f} (prompt tokens of its new calls "
                         f"alone), more than ${max_usd:g}")
