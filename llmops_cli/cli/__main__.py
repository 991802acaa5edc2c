"""``python -m llmops_cli.cli``: the ``llmops`` command."""

from . import main

main()
