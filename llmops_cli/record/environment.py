"""The environment a run was made in: installed versions of the libraries
that can change an answer, a retrieval or a score (read from package
metadata, nothing imported), and what changed between two runs' environments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmops_cli.record.schema import RunRecord


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# distributions whose version can change an answer, a retrieval or a score; optional ones are left out when absent
ENVIRONMENT_PACKAGES = ("llmops-cli", "litellm", "bm25s", "sacrebleu", "rouge-score", "nltk", "llama-cpp-python")


def collect_environment() -> dict[str, str]:
    """Installed versions, read from package metadata (nothing is imported):
    ``{"python": "3.11.7", "llmops-cli": "0.1.0", "litellm": "1.106.2",
    "bm25s": ..., "sacrebleu": ..., "rouge-score": ..., "nltk": ...,
    "llama-cpp-python": ...}``; a package that is not installed is left out."""
    import sys

    env = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in ENVIRONMENT_PACKAGES:
        v = installed_version(name)
        if v is not None:
            env[name] = v
    return env


def version_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """What differs between two :attr:`RunRecord.environment` blocks, one
    line per package in name order, e.g. ``sacrebleu: 2.5.1 → 2.6.0`` (``—``
    for a package only one side has). An empty ``old`` (a record made before
    environments were recorded) gives ``[]``: unknown is not a change."""
    if not old:
        return []
    return [f"{k}: {old.get(k) or '—'} → {new.get(k) or '—'}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


# -- what changed around a run, besides its configuration ------------------------------------

def model_drift(baseline: RunRecord, candidate: RunRecord) -> list[str]:
    """One line per requested model whose served models (the provider's
    response ``model`` and ``system_fingerprint``) differ between the two
    runs; empty when either run has no record of them."""
    lines = []
    for field_name, what in (("served", "model"), ("judge_served", "judge")):
        old, new = getattr(baseline, field_name, None) or {}, getattr(candidate, field_name, None) or {}
        for requested in sorted(set(old) & set(new)):
            if set(old[requested]) != set(new[requested]):
                def fmt(d: dict[str, int]) -> str:
                    return ", ".join(f"{k} ×{n}" for k, n in sorted(d.items()))
                lines.append(f"{what} {requested}: baseline served by {fmt(old[requested])}; now by {fmt(new[requested])}")
    return lines


def environment_changes(baseline: RunRecord, candidate: RunRecord) -> list[str]:
    """The library versions that differ between the runs' ``environment``
    blocks (:func:`version_changes`); empty when the candidate has none."""
    return version_changes(baseline.environment, candidate.environment) if candidate.environment else []
