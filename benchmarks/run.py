"""llmops-cli benchmark: speed and robustness targets of issue 5.

Starts OpenAI-compatible servers on 127.0.0.1 (llmops_cli.testing.FakeOpenAI)
and measures:

  a. N cases at concurrency C against a server with a set latency: run_eval vs
     the ideal N·latency/C and vs a bare asyncio.gather of litellm.acompletion
     with the same concurrency bound (LiteLLM imported and warmed up first).
  b. a fully cached re-run of all 810 SQuAD questions (token_f1, exact_match,
     bleu, rougeL) as a subprocess, with the server stopped; and whether a
     cached run imports LiteLLM at all (or bm25s, numpy or a scorer's library,
     whose results are memoised in the cache).
  c. `llmops --help` wall time.
  d. a 10,000-case run: peak RSS of the subprocess, its wall time, and scoring
     alone.
  e. faults: 429 on every 5th and 500 on every 7th request (every case must end
     scored); a server that is down (exit 3 within the timeout × retries budget).

Usage: python benchmarks/run.py [--quick] [--json benchmarks/results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-real-key")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "squad-rag"
LLMOPS = [sys.executable, "-m", "llmops_cli.cli"]

from llmops_cli.testing import FakeOpenAI  # noqa: E402


def median_of(k, fn):
    return statistics.median(fn() for _ in range(k))


def write_project(d: Path, api_base: str, n: int, metrics: str, timeout: float = 30) -> Path:
    rng = random.Random(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    with (d / "q.jsonl").open("w") as f:
        for i in range(n):
            refs = [" ".join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
            f.write(json.dumps({"id": f"c{i}", "question": f"question {i} {' '.join(rng.choices(words, k=6))}", "answers": refs}) + "\n")
    cfg = d / "llmops.yaml"
    cfg.write_text(f"""model: openai/bench
api_base: {api_base}
params: {{temperature: 0, max_tokens: 16, timeout: {timeout}}}
prompt: {{user: "{{{{ question }}}}"}}
dataset: {{path: q.jsonl, references: answers}}
metrics: {metrics}
max_error_share: 0.0
""")
    return cfg


def bench_concurrency(n: int, c: int, latency: float) -> dict:
    from llmops_cli.config import load_config
    from llmops_cli.run.provider import import_litellm
    from llmops_cli.jobs.runner import run_eval

    litellm = import_litellm()
    with FakeOpenAI(reply=lambda m, b: "alpha beta", latency_s=latency) as srv, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(litellm.acompletion(model="openai/bench", api_base=srv.url, messages=[{"role": "user", "content": "warm"}],
                                        num_retries=0, max_retries=0))
        cfg = load_config(write_project(Path(tmp), srv.url, n, "[token_f1]"))

        async def bare():
            sem = asyncio.Semaphore(c)

            async def one(i):
                async with sem:
                    await litellm.acompletion(model="openai/bench", api_base=srv.url, num_retries=0, max_retries=0,
                                              messages=[{"role": "user", "content": f"question {i}"}], temperature=0, max_tokens=16)
            await asyncio.gather(*(one(i) for i in range(n)))

        def t_bare():
            t = time.perf_counter()
            asyncio.run(bare())
            return time.perf_counter() - t

        def t_run():
            t = time.perf_counter()
            rec = run_eval(cfg, concurrency=c, cache=None)
            assert all(x.output for x in rec.cases)
            return time.perf_counter() - t

        bare_s, run_s = median_of(3, t_bare), median_of(3, t_run)
    ideal = n * latency / c
    return {"n": n, "concurrency": c, "latency_s": latency, "ideal_s": ideal, "bare_litellm_s": bare_s, "run_eval_s": run_s,
            "ratio_vs_bare": run_s / bare_s}


def bench_queueing(n_one: int, n_wide: int) -> dict:
    """Adaptive concurrency against servers that queue: (1) one slot, 50 ms per request, ``n_one`` cases:
    adaptive vs ``-j 1`` (wall time and mean ``latency_s``); (2) 64 slots, 200 ms, ``n_wide`` cases: adaptive
    with the delay signal vs without it (the AIMD limit before it), wall time. Medians of 3, alternated."""
    import functools

    from llmops_cli.run import execute
    from llmops_cli.run.concurrency import AdaptiveLimit
    from llmops_cli.config import load_config
    from llmops_cli.run.provider import import_litellm
    from llmops_cli.jobs.runner import run_eval

    import_litellm()

    def run(cfg, **kw):
        t = time.perf_counter()
        rec = run_eval(cfg, cache=None, **kw)
        wall = time.perf_counter() - t
        assert all(x.output for x in rec.cases)
        lat = [c.latency_s for x in rec.cases for c in x.calls]
        return wall, statistics.mean(lat), rec.usage.concurrency_peak

    out: dict = {}
    with FakeOpenAI(reply=lambda m, b: "alpha beta", latency_s=0.05, slots=1) as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(write_project(Path(tmp), srv.url, n_one, "[token_f1]"))
        rows = {"adaptive": [], "j1": []}
        for _ in range(3):
            rows["adaptive"].append(run(cfg))
            rows["j1"].append(run(cfg, concurrency=1))
        out["one_slot"] = {k: {"wall_s": statistics.median(r[0] for r in v), "latency_s": statistics.median(r[1] for r in v),
                               "peak": max(r[2] for r in v)} for k, v in rows.items()}
        out["one_slot"]["cases"] = n_one
    with FakeOpenAI(reply=lambda m, b: "alpha beta", latency_s=0.2, slots=64) as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(write_project(Path(tmp), srv.url, n_wide, "[token_f1]"))
        rows = {"delay": [], "aimd_only": []}
        original = execute.AdaptiveLimit
        for _ in range(3):
            rows["delay"].append(run(cfg))
            execute.AdaptiveLimit = functools.partial(AdaptiveLimit, delay=False)
            try:
                rows["aimd_only"].append(run(cfg))
            finally:
                execute.AdaptiveLimit = original
        out["wide"] = {k: {"wall_s": statistics.median(r[0] for r in v), "latency_s": statistics.median(r[1] for r in v),
                           "peak": max(r[2] for r in v)} for k, v in rows.items()}
        out["wide"]["cases"] = n_wide
    return out


def bench_cached_810() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "squad"
        shutil.copytree(EXAMPLE, d, ignore=shutil.ignore_patterns("baseline*.json"))
        text = (d / "llmops.yaml").read_text()
        args = [str(d / "llmops.yaml"), "--limit", "0", "--cache-dir", str(Path(tmp) / "cache")]
        with FakeOpenAI(reply=lambda m, b: "Denver Broncos") as srv:
            (d / "llmops.yaml").write_text(text.replace("model: local/smollm2-135m", f"model: openai/bench\napi_base: {srv.url}"))
            subprocess.run(LLMOPS + ["eval", *args, "--update-baseline", "-j", "32", "-o", str(Path(tmp) / "r0.json")],
                           check=True, capture_output=True)
        # server stopped: any call would fail the run

        def once():
            t = time.perf_counter()
            subprocess.run(LLMOPS + ["eval", *args, "-o", str(Path(tmp) / "r1.json")], check=True, capture_output=True)
            return time.perf_counter() - t

        wall = median_of(5, once)
        probe = subprocess.run([sys.executable, "-c", (
            "import sys; from llmops_cli.cli import main\n"
            f"sys.argv=['llmops','eval',{str(d / 'llmops.yaml')!r},'--limit','0','--cache-dir',{str(Path(tmp) / 'cache')!r},'-o',{str(Path(tmp) / 'r2.json')!r}]\n"
            "try: main()\nexcept SystemExit as e: code = e.code\n"
            "print('LITELLM' if 'litellm' in sys.modules else 'NO-LITELLM', 'LLAMA' if 'llama_cpp' in sys.modules else 'NO-LLAMA')\n"
            "print('LOADED', ','.join(m for m in ('bm25s', 'numpy', 'sacrebleu', 'rouge_score', 'nltk') if m in sys.modules))")],
            capture_output=True, text=True)
        rec = json.loads((Path(tmp) / "r1.json").read_text())
    return {"cases": len(rec["cases"]), "cache_hits": rec["usage"]["cache_hits"], "wall_s": wall,
            "imports_litellm": "NO-LITELLM" not in probe.stdout, "loads_local_model": "NO-LLAMA" not in probe.stdout,
            "other_heavy_imports": probe.stdout.split("LOADED", 1)[1].strip() or "none"}


def bench_help() -> dict:
    def once():
        t = time.perf_counter()
        subprocess.run(LLMOPS + ["--help"], check=True, capture_output=True)
        return time.perf_counter() - t
    return {"wall_s": median_of(5, once)}


def bench_10k(n: int) -> dict:
    """``llmops eval`` on ``n`` cases against a zero-latency server, as users run it (adaptive concurrency, no
    cache, four metrics): ``--update-baseline``, then the same run gated against that baseline; wall time and
    peak RSS of each process (wait4), then scoring alone on the n outputs."""
    env = {"OPENAI_API_KEY": "sk-bench", **os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out: dict = {"cases": n}
    with FakeOpenAI(reply=lambda m, b: "alpha beta gamma") as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = write_project(Path(tmp), srv.url, n, "[token_f1, exact_match, bleu, rougeL]")
        for phase, extra in (("baseline", ["--update-baseline"]), ("gated", [])):
            t = time.perf_counter()
            p = subprocess.Popen(LLMOPS + ["eval", str(cfg), "--no-cache", "-o", str(Path(tmp) / f"run-{phase}.json"), *extra],
                                 cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            out[phase] = {"wall_s": time.perf_counter() - t, "peak_rss_mb": usage.ru_maxrss / 1024,
                          "exit_code": os.waitstatus_to_exitcode(status)}
        script = (
            "import sys, time\nfrom llmops_cli.config import load_config\nfrom llmops_cli.record.schema import load_record\n"
            "from llmops_cli.measure.score import score_cases\n"
            f"cfg = load_config({str(cfg)!r}); rec = load_record({str(Path(tmp) / 'run-gated.json')!r})\n"
            "for c in rec.cases: c.scores.clear(); c.stats.clear()\n"
            "t = time.perf_counter(); score_cases(cfg.metrics, rec.cases, 1); print(time.perf_counter() - t, "
            "all(c.scores.get('token_f1') is not None for c in rec.cases))")
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
        if res.returncode:
            raise SystemExit(f"scoring alone failed: {res.stderr[-2000:]} {out}")
        res = res.stdout.split()
    out["scoring_s"], out["all_scored"] = float(res[0]), res[1] == "True"
    return out


def bench_faults(n: int) -> dict:
    from llmops_cli.config import load_config
    from llmops_cli.jobs.runner import run_eval

    with FakeOpenAI(reply=lambda m, b: "alpha", fail_every={5: 429, 7: 500}) as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(write_project(Path(tmp), srv.url, n, "[token_f1]"))
        rec = run_eval(cfg, concurrency=16, cache=None)  # the default retries
    scored = sum(c.scores.get("token_f1") is not None for c in rec.cases)
    with FakeOpenAI(down=True) as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = write_project(Path(tmp), srv.url, 20, "[token_f1]", timeout=2)
        t = time.perf_counter()
        p = subprocess.run(LLMOPS + ["eval", str(cfg), "--update-baseline", "--retries", "2"], capture_output=True, text=True,
                           cwd=tmp)
        down_s = time.perf_counter() - t
    return {"cases": n, "scored": scored, "errors": rec.usage.errors, "retries": rec.usage.retries,
            "down_exit_code": p.returncode, "down_wall_s": down_s, "down_traceback": "Traceback" in p.stderr}


def bench_processes(sizes=(400, 810), rounds: int = 3) -> dict:
    """``llmops eval --processes 1`` vs ``--processes 2`` as whole processes (start-up included), at equal total
    concurrency 32 (``-j 32``: each of 2 workers gets 16), against the test server with 200 ms latency and 64 slots,
    no cache, 4 metrics (token_f1, exact_match, bleu, rougeL). Wall time, medians of ``rounds``, alternated; the
    machine's load average (``os.getloadavg``) before and after each size."""
    out: dict = {"rounds": rounds, "cores": os.cpu_count(), "sizes": []}
    with FakeOpenAI(reply=lambda m, b: "alpha beta", latency_s=0.2, slots=64) as srv:
        for n in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = write_project(Path(tmp), srv.url, n, "[token_f1, exact_match, bleu, rougeL]")
                walls: dict[int, list[float]] = {1: [], 2: []}
                load_before = os.getloadavg()
                for _ in range(rounds):
                    for p in (1, 2):
                        t = time.perf_counter()
                        r = subprocess.run([*LLMOPS, "eval", str(cfg), "--update-baseline", "--no-cache", "-j", "32",
                                            "--processes", str(p), "-q", "-o", f"{tmp}/run-{p}.json"],
                                           capture_output=True, text=True, cwd=tmp)
                        walls[p].append(time.perf_counter() - t)
                        assert r.returncode == 0, r.stderr[-2000:]
                a, b = (json.loads(Path(f"{tmp}/run-{p}.json").read_text()) for p in (1, 2))
                same = [c["scores"] for c in a["cases"]] == [c["scores"] for c in b["cases"]]
                out["sizes"].append({"cases": n, "p1_s": statistics.median(walls[1]), "p2_s": statistics.median(walls[2]),
                                     "p1_all": walls[1], "p2_all": walls[2], "same_scores": same,
                                     "load_before": load_before, "load_after": os.getloadavg()})
    return out


def processes_rows(p: dict) -> str:
    rows = []
    for s in p["sizes"]:
        rows.append((f"{s['cases']} cases, 200 ms, 64 slots, -j 32: --processes 2 vs 1, wall (whole process)",
                     f"{s['p2_s']:.2f} s vs {s['p1_s']:.2f} s ({s['p2_s'] / s['p1_s']:.2f}×; same scores: "
                     f"{s['same_scores']}; load {s['load_before'][0]:.2f} → {s['load_after'][0]:.2f})",
                     "≤ 0.9× to default to the cores", s["p2_s"] <= 0.9 * s["p1_s"] and s["same_scores"]))
    return "| measure | result | target | |\n|---|---|---|---|\n" + "\n".join(
        f"| {n} | {v} | {t} | {'PASS' if ok else 'FAIL'} |" for n, v, t, ok in rows)


def queueing_rows(q: dict) -> str:
    one, wide = q["one_slot"], q["wide"]
    a, j = one["adaptive"], one["j1"]
    d, o = wide["delay"], wide["aimd_only"]
    rows = [
        (f"one slot, 50 ms, {one['cases']} cases: adaptive vs -j 1, wall", f"{a['wall_s']:.2f} s vs {j['wall_s']:.2f} s "
         f"({a['wall_s'] / j['wall_s']:.2f}×; peak in flight {a['peak']})", "≤ 1.1×", a["wall_s"] <= 1.1 * j["wall_s"]),
        ("  … mean latency_s", f"{a['latency_s'] * 1000:.0f} ms vs {j['latency_s'] * 1000:.0f} ms "
         f"({a['latency_s'] / j['latency_s']:.2f}×)", "within 25%", a["latency_s"] <= 1.25 * j["latency_s"]),
        (f"64 slots, 200 ms, {wide['cases']} cases, adaptive: with the delay signal vs without", f"{d['wall_s']:.2f} s vs "
         f"{o['wall_s']:.2f} s ({d['wall_s'] / o['wall_s']:.2f}×; peak {d['peak']} vs {o['peak']})", "no slower",
         d["wall_s"] <= 1.05 * o["wall_s"]),
    ]
    return "| measure | result | target | |\n|---|---|---|---|\n" + "\n".join(
        f"| {n} | {v} | {t} | {'PASS' if ok else 'FAIL'} |" for n, v, t, ok in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    ap.add_argument("--scale", type=int, metavar="N", help="only the large-run row, at N cases (e.g. 100000)")
    ap.add_argument("--queueing", action="store_true", help="only the rows of servers that queue (one slot; 64 slots)")
    ap.add_argument("--processes-row", action="store_true",
                    help="only --processes 1 vs 2 (400 and 810 cases, 200 ms, 64 slots, -j 32)")
    a = ap.parse_args()
    if a.processes_row:
        p = bench_processes((100,) if a.quick else (400, 810))
        print(json.dumps(p, indent=1))
        print(processes_rows(p))
        return
    if a.queueing:
        print(queueing_rows(bench_queueing(*((100, 200) if a.quick else (400, 400)))))
        return
    if a.scale:
        print(json.dumps(bench_10k(a.scale), indent=1))
        return
    n, big, faults = (100, 2000, 50) if a.quick else (400, 10_000, 200)
    r = {"machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}", "quick": a.quick}
    r["help"] = bench_help()
    r["cached_810"] = bench_cached_810()
    r["concurrency"] = bench_concurrency(n, 32, 0.2)
    r["large"] = bench_10k(big)
    r["faults"] = bench_faults(faults)
    r["queueing"] = bench_queueing(*((100, 200) if a.quick else (400, 400)))
    Path(a.json).write_text(json.dumps(r, indent=1) + "\n")
    c, k, L, f = r["concurrency"], r["cached_810"], r["large"], r["faults"]
    rows = [
        ("`llmops --help`", f"{r['help']['wall_s']:.2f} s", "≤ 0.3 s", r["help"]["wall_s"] <= 0.3),
        (f"fully cached re-run, {k['cases']} SQuAD questions, 4 metrics", f"{k['wall_s']:.2f} s", "≤ 1.0 s", k["wall_s"] <= 1.0),
        ("  … imports LiteLLM / loads the local model", f"{k['imports_litellm']} / {k['loads_local_model']}", "no / no",
         not k["imports_litellm"] and not k["loads_local_model"]),
        ("  … imports bm25s, numpy or a scorer's library", k["other_heavy_imports"], "none (memoised)",
         k["other_heavy_imports"] == "none"),
        (f"{c['n']} cases, {c['latency_s'] * 1000:.0f} ms latency, concurrency {c['concurrency']}: run_eval",
         f"{c['run_eval_s']:.2f} s (ideal {c['ideal_s']:.2f} s, bare LiteLLM {c['bare_litellm_s']:.2f} s)",
         "≤ 1.15 × bare", c["ratio_vs_bare"] <= 1.15),
        ("  … ratio run_eval / bare LiteLLM", f"{c['ratio_vs_bare']:.2f}", "≤ 1.15", c["ratio_vs_bare"] <= 1.15),
        (f"{L['cases']:,} cases: `eval --update-baseline`, peak RSS", f"{L['baseline']['peak_rss_mb']:.0f} MB "
         f"(run {L['baseline']['wall_s']:.1f} s, exit {L['baseline']['exit_code']})", "≤ 300 MB",
         L["baseline"]["peak_rss_mb"] <= 300 and L["baseline"]["exit_code"] == 0),
        (f"{L['cases']:,} cases: gated `eval`, peak RSS", f"{L['gated']['peak_rss_mb']:.0f} MB "
         f"(run {L['gated']['wall_s']:.1f} s, exit {L['gated']['exit_code']})", "≤ 300 MB",
         L["gated"]["peak_rss_mb"] <= 300 and L["gated"]["exit_code"] == 0),
        (f"{L['cases']:,} cases: scoring alone", f"{L['scoring_s']:.1f} s", "≤ 10 s", L["scoring_s"] <= 10 and L["all_scored"]),
        (f"429 every 5th + 500 every 7th, {f['cases']} cases, default retries", f"{f['scored']} scored, {f['errors']} errors, {f['retries']} retries",
         "all scored", f["scored"] == f["cases"] and f["errors"] == 0),
        ("server down (timeout 2 s, 2 retries)", f"exit {f['down_exit_code']} in {f['down_wall_s']:.1f} s, traceback: {f['down_traceback']}",
         "exit 3, no traceback", f["down_exit_code"] == 3 and not f["down_traceback"]),
    ]
    print(f"machine: {r['machine']}{' (quick)' if a.quick else ''}\n")
    print(queueing_rows(r["queueing"]) + "\n")
    print("| measure | result | target | |\n|---|---|---|---|")
    for name, val, target, ok in rows:
        print(f"| {name} | {val} | {target} | {'PASS' if ok else 'FAIL'} |")


if __name__ == "__main__":
    main()
