"""Build the HTML reports of the examples and photograph them in a real headless Chromium.

    python scripts/screenshot_report.py [--out screenshots] [--cache-dir .llmops/cache] [--chromium chromium]

1. ``examples/squad-rag`` as committed (50 questions, the embedded SmolLM2 model, offline; needs the ``[local]``
   extra; about 2 minutes on 2 cores the first time, seconds once the answers are cached), gated against its
   committed ``baseline.json`` → ``squad-rag.html``.
2. Its worse-prompt regression (the README's scenario: ``prompts/user.j2`` without the ``Text: {{ context }}``
   line, in a copy of the example, never in the example itself) → ``squad-rag-worse-prompt.html``.
3. ``examples/squad-predictions``: all 810 SQuAD questions, slqa-plus's published answers scored with
   ``llmops score`` against the bert-ensemble baseline → ``squad-810.html`` (no model at all).

Each report is saved with a full-page PNG (``chromium --headless --no-sandbox --screenshot=...
--window-size=1400,4000``), and the regression's also with its most fallen case opened
(``report.html#case=<id>``). Prints each report's size. No network: the model is the embedded one, the
predictions are files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def llmops(*args: str, cwd: Path, cache_dir: Path) -> int:
    """Run ``llmops`` in this interpreter's environment with ``cache_dir`` as its cache; returns its exit code
    (0 or 1; anything else stops the script)."""
    done = subprocess.run([sys.executable, "-m", "llmops_cli.cli", *args, "--quiet"], cwd=cwd,
                          env={**os.environ, "LLMOPS_CACHE_DIR": str(cache_dir)})
    if done.returncode not in (0, 1):
        raise SystemExit(f"llmops {' '.join(args)} exited {done.returncode}")
    return done.returncode


def screenshot(chromium: str, html: Path, png: Path, profile: Path, fragment: str = "") -> None:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1400,4000",
                    html.resolve().as_uri() + fragment], check=True, capture_output=True, timeout=180)


def most_fallen(html: Path) -> str | None:
    """The id of the case the gate ranks as most fallen, read from the report's case data."""
    text = html.read_text(encoding="utf-8")
    start = text.index('<script id="case-data" type="application/json">') + len('<script id="case-data" type="application/json">')
    data = json.loads(text[start:text.index("</script>", start)])
    fallen = sorted((c for c in data["cases"] if c.get("d") is not None), key=lambda c: c["d"])
    return fallen[0]["id"] if fallen and fallen[0]["d"] < 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("screenshots"), help="where the reports and PNGs go")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".llmops" / "cache",
                    help="the answer cache (a re-run of the examples answers from it)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir.resolve()
    reports = []
    with tempfile.TemporaryDirectory(prefix="llmops-screens-") as tmp:
        tmp = Path(tmp)
        example = tmp / "squad-rag"
        shutil.copytree(ROOT / "examples" / "squad-rag", example)
        code = llmops("eval", "llmops.yaml", "--html", str(out / "squad-rag.html"), "-o", str(tmp / "rag.json"),
                      cwd=example, cache_dir=cache)
        reports.append(("squad-rag", out / "squad-rag.html", code))
        user = example / "prompts" / "user.j2"
        user.write_text("".join(line for line in user.read_text(encoding="utf-8").splitlines(keepends=True)
                                if "{{ context }}" not in line), encoding="utf-8")
        code = llmops("eval", "llmops.yaml", "--html", str(out / "squad-rag-worse-prompt.html"), "-o",
                      str(tmp / "rag-worse.json"), cwd=example, cache_dir=cache)
        reports.append(("squad-rag-worse-prompt", out / "squad-rag-worse-prompt.html", code))
        preds = ROOT / "examples" / "squad-predictions"
        code = llmops("score", str(preds / "llmops.yaml"), "--outputs", str(preds / "predictions-slqa-plus.json"),
                      "--html", str(out / "squad-810.html"), "-o", str(tmp / "squad-810.json"), cwd=tmp, cache_dir=cache)
        reports.append(("squad-810", out / "squad-810.html", code))
        for name, html, code in reports:
            screenshot(args.chromium, html, out / f"{name}.png", tmp / "profile")
            print(f"{name}: exit {code}, {html} {html.stat().st_size / 1024:.0f} KiB, screenshot {out / (name + '.png')}")
        fallen = most_fallen(out / "squad-rag-worse-prompt.html")
        if fallen:
            png = out / "squad-rag-worse-prompt-case.png"
            screenshot(args.chromium, out / "squad-rag-worse-prompt.html", png, tmp / "profile", f"#case={fallen}")
            print(f"squad-rag-worse-prompt with case {fallen} opened: {png}")


if __name__ == "__main__":
    main()
