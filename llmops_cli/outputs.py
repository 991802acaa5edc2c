"""Files llmops writes — run records, reports, the baseline, the cache —
checked before anything runs, so that a path that cannot be written or that
would overwrite one of the run's own inputs is exit 2 before any model call
(:class:`~llmops_cli.errors.OutputError`, naming the path and the option).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OutputError


def check_writable(path: str | Path, key: str | None = None) -> Path:
    """Refuse, before anything runs, a file that cannot be written: ``path``
    is a folder, or its nearest existing folder is a file or read-only. Creates
    nothing. (A full disk shows only when writing: see
    :func:`~llmops_cli.record.atomic_write_text`.)

    Raises:
        OutputError: naming ``path`` (and ``key``, e.g. the option that gave it).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, key, "cannot write: it is a folder")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(path, key, f"cannot write: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(path, key, f"cannot write: {folder} is read-only")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse, before any model call, an output that would overwrite one of
    the run's inputs or cannot be written.

    ``outputs`` maps an option to the path it gives (``{"--output": ...,
    "--junit": ...}``; ``None`` is skipped); ``inputs`` maps a description to a
    file the run reads (see :func:`run_inputs`). Paths are compared resolved
    (symbolic links followed) and with ``os.path.samefile`` (hard links).

    Raises:
        OutputError: naming the output path and its option (also when two
            options name the same file).
    """
    earlier: dict[str, Path] = {}
    for key, out in outputs.items():
        if out is None:
            continue
        out = Path(out)
        for what, inp in list(inputs.items()) + list(earlier.items()):
            if inp is not None and _same_file(out, Path(inp)):
                raise OutputError(out, key, f"refusing to overwrite {what} ({inp})")
        check_writable(out, key)
        earlier[key] = out


def run_inputs(cfg, baseline: str | Path | None = None, outputs_file: str | Path | None = None) -> dict[str, Path | None]:
    """The files a run of ``cfg`` reads, by description: the config, the
    baseline, the eval set, the corpus, the prompt and judge template files,
    and an ``--outputs`` file. For :func:`check_outputs`."""
    from .dataset import dataset_path
    from .retrieval import corpus_path

    files: dict[str, Path | None] = {
        "the config file": cfg.path,
        "the baseline": Path(baseline) if baseline is not None else cfg.baseline_path,
        "the eval set": dataset_path(cfg.dataset, cfg.base_dir),
        "the outputs file": Path(outputs_file) if outputs_file else None,
    }
    if cfg.retrieval:
        files["the retrieval corpus"] = corpus_path(cfg.retrieval, cfg.base_dir)
    for key in ("system_file", "user_file"):
        rel = getattr(cfg.prompt, key)
        if rel:  # resolved as config._load_text does
            files[f"prompt.{key}"] = Path(rel) if Path(rel).is_absolute() else cfg.base_dir / rel
    for name, judge in cfg.judges.items():
        if judge.template_file:
            files[f"judges.{name}.template_file"] = cfg.resolve(judge.template_file)
    return files


def write_error(path: Path, exc: OSError, key: str | None = None) -> OutputError:
    """The :class:`OutputError` to raise for ``exc``, a failure to write
    ``path``: what :func:`check_writable` finds wrong (a parent that is a
    file, ...), else the system's reason (e.g. "No space left on device")."""
    if isinstance(exc, OutputError):
        return exc
    try:
        check_writable(path, key)
    except OutputError as found:
        return found
    return OutputError(path, key, f"cannot write: {exc.strerror or exc}")


def append_text(path: str | Path, text: str) -> Path:
    """Append ``text`` to ``path`` (e.g. ``$GITHUB_STEP_SUMMARY``).

    Raises:
        OutputError: the file cannot be written; names ``path``.
    """
    path = Path(path)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise write_error(path, e) from None
    return path
