"""``python -m llmops_cli.cli``: the ``llmops`` command."""

from llmops_cli.cli import main

main()
