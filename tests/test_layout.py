"""The package's layout as a contract: a config is plain data until it is
prepared; the stages import one way (``lint-imports``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
model: openai/fake-model
api_base: http://127.0.0.1:9/v1
prompt:
  user_file: prompts/user.j2
dataset: {path: questions.jsonl, id: id, inputs: [question], references: answer}
metrics: [exact_match, a_plugin_metric]
checks:
  marked: {python: "my_checks.py:marked"}
baseline: baseline.json
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "questions.jsonl").write_text('{"id": "q1", "question": "Who?", "answer": "Denver"}\n')
    (tmp_path / "my_checks.py").write_text(
        "from pathlib import Path\n"
        "Path(__file__).with_name('IMPORTED').write_text('yes')\n"
        "def marked(output):\n    return True\n")
    cfg = tmp_path / "llmops.yaml"
    cfg.write_text(CONFIG)
    return cfg


PROBE = """\
import sys
from llmops_cli.config import load_config
cfg = load_config(sys.argv[1])
print("CHECK_MODULE", "my_checks" in sys.modules)
print("PLUGINS", "llmops_cli.measure.plugins" in sys.modules, "importlib.metadata" in sys.modules and
      "llmops_cli.measure.plugins" in sys.modules)
print("MEASURE", sorted(m for m in sys.modules if m.startswith("llmops_cli.measure")))
from llmops_cli.measure.prepare import prepare
try:
    prepare(cfg)
except Exception as e:
    print("PREPARE", type(e).__name__, e)
"""


def test_load_config_imports_no_check_and_loads_no_plugin(tmp_path):
    """load_config on a config naming a python check, a plugin metric and a
    prompt file that does not exist: it parses, imports neither the check's
    module nor the plugin machinery, and reads no file but the YAML; prepare()
    then does all three (so the probe can tell)."""
    cfg = _project(tmp_path)
    res = subprocess.run([sys.executable, "-c", PROBE, str(cfg)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert lines["CHECK_MODULE"] == "False" and not (tmp_path / "IMPORTED").exists()
    assert lines["PLUGINS"].startswith("False")
    assert lines["MEASURE"] == "[]", "loading a config must import no measure code"
    # prepare reads the missing prompt file first: one error naming the key
    assert lines["PREPARE"].startswith("ConfigError") and "prompt.user_file" in lines["PREPARE"]
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "user.j2").write_text("Q: {{ question }}")
    res = subprocess.run([sys.executable, "-c", PROBE, str(cfg)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    # the unknown metric is found by prepare, after the plugins were looked for
    assert lines["PREPARE"].startswith("ConfigError") and "a_plugin_metric" in lines["PREPARE"], res.stdout
    cfg.write_text(CONFIG.replace(", a_plugin_metric", ""))
    res = subprocess.run([sys.executable, "-c", PROBE, str(cfg)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert "PREPARE" not in lines, res.stdout
    assert (tmp_path / "IMPORTED").exists(), "prepare() imports the python check"


LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed beside this Python")
def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    """lint-imports passes on the package, and fails once a lower stage
    imports a higher one (a copy of the package with one planted import)."""
    exe = str(LINT_IMPORTS)
    ok = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stdout[-2000:]
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "llmops_cli", copy / "llmops_cli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / "llmops_cli" / "record" / "usage.py"
    target.write_text(target.read_text() + "\n\ndef _planted():\n    from llmops_cli.gate import rules  # noqa: F401\n")
    bad = subprocess.run([exe], capture_output=True, text=True, cwd=copy, timeout=300,
                         env={"PATH": f"{LINT_IMPORTS.parent}:/usr/bin:/bin", "PYTHONPATH": str(copy)})
    assert bad.returncode != 0
    assert "llmops_cli.record is not allowed to import llmops_cli.gate" in bad.stdout
