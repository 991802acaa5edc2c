"""Run: the plan's requests answered, every call through LiteLLM.

* :mod:`.execute` — :func:`execute`: cache look-ups, concurrent calls, an early
  stop once the run cannot complete.
* :mod:`.provider` — everything LiteLLM-facing: import, one call with retries,
  cost, credentials, key redaction.
* :mod:`.faults` — the retry policy: which errors are retried, ``Retry-After``, back-off.
* :mod:`.concurrency` — the adaptive limit on calls in flight per endpoint; :mod:`.queueing` — its delay
  signal (a server that queues instead of refusing).
* :mod:`.budget` — ``--max-cost``: the run's spend watched call by call.
* :mod:`.deployments` — ``deployments:``/``fallbacks:`` through one ``litellm.Router``.
* :mod:`.local_model` — the embedded SmolLM2 model as a LiteLLM provider.
* :mod:`.aio` — settling asyncio tasks after an interrupted run.

Stands on plan, record, config and core.
"""

from llmops_cli.core.exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "execute": "execute", "Progress": "execute", "DEFAULT_RETRIES": "execute",
    "import_litellm": "provider", "redact": "provider",
    "AdaptiveLimit": "concurrency", "targets": "deployments",
})
__all__ = __dir__()
