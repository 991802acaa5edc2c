"""Probe behind the README's --processes numbers: one process vs 2 spawned workers (`--processes 2`) vs 2 workers
forked after the parent imported LiteLLM (not built: see the README, Shards). `python benchmarks/processes_fork_probe.py [N]`
(default 810 cases; 200 ms, 64 slots, -j 32 in total, no cache, medians of 3)."""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENAI_API_KEY", "sk-x")
from run import LLMOPS, FakeOpenAI, write_project  # noqa: E402

FORKED = r'''
import os, sys, time
t0 = time.perf_counter()
os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
from llmops_cli.run.provider import import_litellm
import_litellm()
from llmops_cli.jobs.evaluate import EvalOptions, evaluate
from llmops_cli.jobs.merge import merge_records
from llmops_cli.record.schema import load_record, save_record
cfg, tmp = sys.argv[1], sys.argv[2]
pids = []
for k in (1, 2):
    pid = os.fork()
    if pid == 0:
        out = evaluate(EvalOptions(cfg, concurrency=16, use_cache=False, shard=(k, 2), record_path=f"{tmp}/s{k}.json"))
        os._exit(out.exit_code)
    pids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
rec, _ = merge_records([(f"{tmp}/s{k}.json", load_record(f"{tmp}/s{k}.json")) for k in (1, 2)])
save_record(rec, f"{tmp}/fork.json")
print("codes", codes, "wall", round(time.perf_counter() - t0, 2))
'''
with FakeOpenAI(reply=lambda m, b: "alpha beta", latency_s=0.2, slots=64) as srv, tempfile.TemporaryDirectory() as tmp:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 810
    cfg = write_project(Path(tmp), srv.url, n, "[token_f1, exact_match, bleu, rougeL]")
    res = {"p1": [], "spawn2": [], "fork2": []}
    for _ in range(3):
        for name, cmd in (("p1", LLMOPS + ["eval", str(cfg), "--no-cache", "-q", "-j", "32", "--update-baseline", "-o", f"{tmp}/p1.json"]),
                          ("spawn2", LLMOPS + ["eval", str(cfg), "--no-cache", "-q", "-j", "32", "--processes", "2", "--update-baseline", "-o", f"{tmp}/p2.json"]),
                          ("fork2", [sys.executable, "-c", FORKED, str(cfg), tmp])):
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
            assert r.returncode == 0, r.stderr[-1000:] + r.stdout[-500:]
            res[name].append(round(time.perf_counter() - t, 2))
    a = [c["scores"] for c in json.load(open(f"{tmp}/p1.json"))["cases"]]
    b = [c["scores"] for c in json.load(open(f"{tmp}/fork.json"))["cases"]]
    print(n, {k: (statistics.median(v), v) for k, v in res.items()}, "fork same scores:", a == b)
