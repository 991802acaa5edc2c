"""``llmops report``: the HTML report of any saved run record — alone, or
compared with a baseline under a config's gate rules — calling no model.

The record and the config are read as ``llmops gate`` reads them
(:func:`llmops_cli.jobs.merge.load_candidate`, :func:`~llmops_cli.jobs.merge.recorded_config`):
the config defaults to the one the record names; a shard's record is not
compared (merge the shards first). Unlike ``llmops gate``, the config only
lends its gate rules: the record may have been made with another
configuration, whose changes the report lists.
"""

from __future__ import annotations

from pathlib import Path

from llmops_cli.core.errors import InputError
from llmops_cli.gate.outcome import Outcome


def write_html_report(run: str | Path, html: str | Path, *, baseline: str | Path | None = None,
                      config: str | Path | None = None) -> tuple[Path, Outcome | None]:
    """Write the HTML report of the run record ``run`` to ``html``.

    Args:
        run: a run record (``.llmops/runs/<run-id>.json``, ``-o``) or a baseline file.
        html: where the report goes (written atomically).
        baseline: a baseline (or another run's record) to compare with; None
            reports the run alone, without a gate.
        config: the llmops.yaml whose gate rules (``gate``,
            ``max_unscored_share``) the comparison applies; default: the
            config the record names (``config_path``). Only read with ``baseline``.

    Returns:
        ``(the path written, the gate's outcome)``; the outcome is None
        without ``baseline``. Its exit code is the gate's verdict (0, 1, 3),
        shown in the report; writing the report succeeded either way.

    Raises:
        InputError (BaselineError, ConfigError, OutputError): a record or
            config missing or malformed, records of different eval sets, a
            shard's record with a baseline, or ``html`` that cannot be
            written or is one of the inputs (exit 2, naming the file).
    """
    from llmops_cli.core.files import atomic_write_text, check_outputs
    from llmops_cli.gate.outcome import from_comparison
    from llmops_cli.record.schema import load_record
    from llmops_cli.report.html import html_report

    if baseline is None:
        record = load_record(run)
        check_outputs({"--html": html}, {"the run record": run})
        return atomic_write_text(html, html_report(record)), None
    from llmops_cli.config import load_config
    from llmops_cli.gate.rules import compare
    from llmops_cli.jobs.merge import load_candidate

    record = load_candidate(run)
    config = config if config is not None else _recorded_config(record, run)
    check_outputs({"--html": html}, {"the run record": run, "the baseline": baseline, "the config file": config})
    cfg = load_config(config)
    base = load_record(baseline, "baseline")
    if record.sequential is not None:  # its verdict is its sequences' (llmops_cli.gate.sequential_rules)
        from llmops_cli.gate.sequential_rules import compare_sequential as compare
    cmp = compare(base, record, cfg.gate, baseline_path=str(baseline), max_unscored_share=cfg.max_unscored_share)
    outcome = from_comparison(cmp, record, max_unscored_share=cfg.max_unscored_share)
    return atomic_write_text(html, html_report(record, cmp, baseline=base, outcome=outcome)), outcome


def _recorded_config(record, run: str | Path) -> str:
    """The config the record names, as ``llmops gate`` finds it; the error
    says to give ``--config``."""
    from llmops_cli.jobs.merge import recorded_config

    try:
        return recorded_config(record, run)
    except InputError as err:
        raise InputError(run, err.key, err.message.replace("give the config: llmops gate RUN CONFIG",
                                                           "give the config: --config CONFIG")) from None
