"""Stress: SIGTERM sent mid-call is never lost.

Starts the project's fake OpenAI server (``llmops_cli.testing.FakeOpenAI``,
127.0.0.1, every answer delayed ``--latency`` seconds), then ``--rounds``
times runs ``llmops eval CONFIG --update-baseline --no-cache`` in a fresh
process and, once the server has received a request from it (calls in
flight, inside LiteLLM/aiohttp), waits a random 0–``--jitter`` seconds and
sends SIGTERM. A round is **lost** when the process does not exit 143, or a
baseline file was written, or it printed a traceback. Before the fix, 4 of 96
such signals were swallowed inside aiohttp: exit 0, baseline written.

Usage::

    python benchmarks/sigterm_stress.py              # 50 rounds, ~3–5 min on 2 cores
    python benchmarks/sigterm_stress.py --rounds 200 --jitter 1.0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmops_cli.testing import FakeOpenAI  # noqa: E402

CONFIG = """\
model: openai/fake-model
api_base: {url}
params: {{temperature: 0, max_tokens: 16, timeout: 30}}
prompt:
  user: "Question: {{{{ question }}}}"
dataset: {{path: questions.jsonl, id: id, inputs: [question], references: answers}}
metrics: [exact_match, token_f1]
gate:
  metrics:
    exact_match: {{max_drop: 0.05}}
baseline: baseline.json
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--latency", type=float, default=0.5, help="seconds per answer")
    ap.add_argument("--jitter", type=float, default=0.6, help="SIGTERM 0..JITTER s after the first request arrives")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    # a placeholder key for the local fake server (LiteLLM asks for one); no real credential is used
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENAI_API_KEY": "sk-fake-local"}
    outcomes: dict[str, int] = {}
    lost = []
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(reply=lambda m, b: "an answer", latency_s=args.latency) as srv:
        d = Path(tmp)
        (d / "questions.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "question": f"question {i}?",
                                                               "answers": ["an answer"]}) + "\n"
                                                   for i in range(args.cases)), encoding="utf-8")
        (d / "llmops.yaml").write_text(CONFIG.format(url=srv.url), encoding="utf-8")
        t0 = time.perf_counter()
        for k in range(args.rounds):
            (d / "baseline.json").unlink(missing_ok=True)
            seen = srv.request_count
            p = subprocess.Popen([sys.executable, "-m", "llmops_cli.cli", "eval", "llmops.yaml", "--update-baseline",
                                  "--no-cache", "-j", "4"], cwd=d, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            while srv.request_count == seen and p.poll() is None:  # until its calls are in flight
                time.sleep(0.005)
            time.sleep(rng.uniform(0, args.jitter))
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=120)
            wrote = (d / "baseline.json").exists()
            key = f"exit {p.returncode}" + (", baseline written" if wrote else "") + (", traceback" if "Traceback" in err else "")
            outcomes[key] = outcomes.get(key, 0) + 1
            if p.returncode != 143 or wrote or "Traceback" in err:
                lost.append((k, key, err.strip().splitlines()[-1:] if err.strip() else []))
            print(f"  round {k + 1}/{args.rounds}: {key}", flush=True)
    print(f"\n{args.rounds} SIGTERMs mid-call ({args.cases} cases, {args.latency:g} s per answer, 4 in flight; "
          f"{time.perf_counter() - t0:.0f} s)")
    for key, n in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {key}")
    print(f"lost: {len(lost)} of {args.rounds}")
    for k, key, last in lost:
        print(f"  round {k + 1}: {key} {' '.join(last)}")
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
