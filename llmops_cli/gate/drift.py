"""What changed around a run, besides its configuration: the served model
(the provider's response ``model`` and ``system_fingerprint``) and the
installed libraries.
"""

from __future__ import annotations

from llmops_cli.record.schema import RunRecord


def model_drift(baseline: RunRecord, candidate: RunRecord) -> list[str]:
    """One line per requested model whose served models (response ``model``
    and ``system_fingerprint``) differ between the two runs; empty when
    either run has no record of them."""
    lines = []
    for field_name, what in (("served", "model"), ("judge_served", "judge")):
        old, new = getattr(baseline, field_name, None) or {}, getattr(candidate, field_name, None) or {}
        for requested in sorted(set(old) & set(new)):
            if set(old[requested]) != set(new[requested]):
                fmt = lambda d: ", ".join(f"{k} ×{n}" for k, n in sorted(d.items()))  # noqa: E731
                lines.append(f"{what} {requested}: baseline served by {fmt(old[requested])}; now by {fmt(new[requested])}")
    return lines


def environment_changes(baseline: RunRecord, candidate: RunRecord) -> list[str]:
    """The library versions that differ between the runs' ``environment``
    blocks, one ``name old → new`` line each; empty when the candidate has none."""
    from llmops_cli.record.environment import environment_changes as changes

    return changes(baseline.environment, candidate.environment) if candidate.environment else []
