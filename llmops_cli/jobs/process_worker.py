"""A worker of :mod:`llmops_cli.jobs.processes`: ``python -m
llmops_cli.jobs.process_worker OPTIONS_JSON FD`` runs one shard of a run
(:func:`llmops_cli.jobs.evaluate.evaluate` with ``shard=(k, n)``), writes
JSON lines to the pipe ``FD`` — ``{"done": d, "total": t}`` as calls
resolve (at most ten a second), then ``{"result": {"status", "reason"}}`` —
and exits with the outcome's code (143 after SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    """Run one shard (``argv``: the options as JSON, the message pipe's fd);
    return the exit code."""
    from llmops_cli.jobs.evaluate import EvalOptions, evaluate

    spec = json.loads(argv[0])
    spec["shard"] = tuple(spec["shard"])
    out = os.fdopen(int(argv[1]), "w", encoding="utf-8", buffering=1)
    terminated: list[int] = []

    def on_sigterm(signum, frame):
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    last = [0.0]

    def send(msg: dict[str, Any]) -> None:
        try:
            out.write(json.dumps(msg) + "\n")
        except OSError:  # the parent is gone
            pass

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1 or done >= total:
            last[0] = now
            send({"done": done, "total": total})

    try:
        outcome = evaluate(EvalOptions(**spec), progress=progress)
        code = outcome.exit_code
        send({"result": {"status": outcome.status, "reason": outcome.reason}})
    except KeyboardInterrupt:  # outside the run (e.g. while importing)
        code = 130
    if code == 130 and terminated:
        code = 143
    try:
        out.close()
    except OSError:
        pass
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    sys.exit(main(sys.argv[1:]))
