"""The starter project that ``llmops init [DIR]`` writes.

A new user gets, from nothing, a project that shows the gate catching a
regression, offline on the embedded model (``local/smollm2-135m``):
``llmops.yaml`` (a prompt that files 40 customer messages as JSON tickets,
decoding constrained by a JSON schema, and a gate on checks the tiny model
passes reliably: the order id copied, the schema fitted, the answer short),
``llmops.changed.yaml`` (the same but for one prompt line: the order id is no
longer shown, so the copy check falls from ~0.97 to 0), the eval set
``data/tickets.jsonl``, a short ``LLMOPS.md`` (the three commands and what
the gate shows) and a ``.gitignore`` for ``.llmops/`` (the response cache and
the run records). ``llmops eval llmops.yaml --update-baseline`` then
``llmops eval llmops.yaml`` exit 0; ``llmops eval llmops.changed.yaml`` exits 1.

The file contents are package data under ``llmops_cli/jobs/templates/starter/``. Nothing is
ever overwritten: if any file the starter would write exists, nothing is
written at all. The one exception is an existing ``.gitignore``, which gets a
``.llmops/`` line appended when no line ignores ``.llmops`` yet.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from llmops_cli.core.errors import InputError, LlmopsError, OutputError

# (package resource under llmops_cli/jobs/templates/starter/, path written in the project), in write order.
# The .gitignore ships as "gitignore": setuptools' package-data globs skip dot files.
STARTER_FILES: tuple[tuple[str, str], ...] = (
    ("llmops.yaml", "llmops.yaml"),
    ("llmops.changed.yaml", "llmops.changed.yaml"),  # llmops.yaml but for one prompt line: the gate exits 1
    ("data/tickets.jsonl", "data/tickets.jsonl"),
    ("LLMOPS.md", "LLMOPS.md"),  # not README.md: `llmops init .` in an existing repository must not collide
    ("gitignore", ".gitignore"),
)

GITIGNORE = ".gitignore"
IGNORE_LINE = ".llmops/"
# .gitignore lines that already keep .llmops out of git.
_IGNORES = {f"{lead}.llmops{tail}".encode() for lead in ("", "/") for tail in ("", "/", "/*", "/**")}

EXISTS_MESSAGE = "already exists; llmops init never overwrites a file (nothing was written)"


def create_project(directory: str | Path) -> list[Path]:
    """Write the starter project into ``directory``.

    Args:
        directory: the project folder (str or Path, relative to the current
            folder or absolute). Created, with its parents, if missing.

    Returns:
        The paths written, each ``Path(directory) / <relative path>``, in this
        order: ``llmops.yaml``, ``llmops.changed.yaml``,
        ``data/tickets.jsonl``, ``LLMOPS.md``, ``.gitignore``. An existing ``.gitignore`` is listed
        only if a ``.llmops/`` line was appended to it (it is left untouched
        when a line such as ``.llmops``, ``.llmops/`` or ``/.llmops/`` already
        ignores the folder). Files are UTF-8 with ``\\n`` line endings; a line
        appended to a ``.gitignore`` with ``\\r\\n`` endings uses ``\\r\\n``.

    Raises:
        InputError: before anything is written — ``directory`` or one of its
            parents exists and is not a folder; a file the starter would write
            already exists (the message names the first one); a folder it
            needs (``data``) exists as a file; an existing
            ``.gitignore`` is not a file or cannot be read.
        OutputError: a folder or file cannot be written (read-only or full
            disk, no permission); the message names the path. Files and
            folders this call created are removed again, and an existing
            ``.gitignore`` is left as it was.
        LlmopsError: the installed package lacks its starter files (a broken
            install; reinstall llmops-cli).
    """
    root = Path(directory)
    _check_folder(root)
    contents = {rel: _read_resource(src) for src, rel in STARTER_FILES}

    append_gitignore: bytes | None = None  # bytes to append to an existing .gitignore
    gitignore_exists = False
    for _src, rel in STARTER_FILES:
        target = root / rel
        for parent in _between(root, target):
            if os.path.lexists(parent) and not parent.is_dir():
                raise InputError(parent, None, "exists and is not a folder; llmops init needs a folder here "
                                               "(nothing was written)")
        if rel == GITIGNORE and os.path.lexists(target):
            gitignore_exists = True
            append_gitignore = _gitignore_addition(target)
        elif os.path.lexists(target):
            raise InputError(target, None, EXISTS_MESSAGE)

    written: list[Path] = []
    created_files: list[Path] = []
    created_dirs: list[Path] = []
    current = root
    try:
        _make_dirs(root, created_dirs)
        for _src, rel in STARTER_FILES:
            target = root / rel
            if rel == GITIGNORE and gitignore_exists:
                current = target
                if append_gitignore:
                    _append(target, append_gitignore)
                    written.append(target)
                continue
            current = target.parent
            _make_dirs(target.parent, created_dirs)
            current = target
            with open(target, "x", encoding="utf-8", newline="\n") as f:
                created_files.append(target)
                f.write(contents[rel])
            written.append(target)
    except FileExistsError:  # appeared since the check (another process): still never overwrite
        _undo(created_files, created_dirs)
        raise InputError(current, None, EXISTS_MESSAGE) from None
    except OSError as e:
        _undo(created_files, created_dirs)
        raise OutputError(current, None, f"cannot write: {e.strerror or e} (nothing was written)") from None
    return written


def _check_folder(root: Path) -> None:
    """``root`` and its nearest existing ancestor must be folders."""
    for p in (root, *root.parents):
        if os.path.lexists(p):
            if not p.is_dir():
                raise InputError(p, None, "exists and is not a folder (nothing was written)")
            return


def _between(root: Path, target: Path) -> list[Path]:
    """The folders strictly between ``root`` and ``target`` (``root/data`` for ``root/data/tickets.jsonl``)."""
    parts = target.relative_to(root).parts
    return [root.joinpath(*parts[:i]) for i in range(1, len(parts))]


def _read_resource(name: str) -> str:
    """The text of ``llmops_cli/jobs/templates/starter/<name>``, with ``\\n`` line endings."""
    res = files("llmops_cli.jobs") / "templates" / "starter"
    for part in name.split("/"):
        res = res / part
    try:
        text = res.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LlmopsError(f"the installed llmops-cli lacks its starter file templates/starter/{name} ({e}); "
                          "reinstall llmops-cli") from None
    return text.replace("\r\n", "\n")


def _gitignore_addition(path: Path) -> bytes | None:
    """What to append to an existing ``.gitignore`` so that it ignores
    ``.llmops/``: ``None`` when a line already does."""
    if not path.is_file():
        raise InputError(path, None, "exists and is not a file (nothing was written)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, None, f"cannot read: {e.strerror or e} (nothing was written)") from None
    if any(line.strip() in _IGNORES for line in data.split(b"\n")):
        return None
    eol = b"\r\n" if b"\r\n" in data else b"\n"
    lead = eol if data and not data.endswith(b"\n") else b""
    return lead + IGNORE_LINE.encode() + eol


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path``; on failure, cut the file back to its old size."""
    size = path.stat().st_size
    try:
        with open(path, "ab") as f:
            f.write(data)
    except OSError:
        try:
            if path.stat().st_size != size:
                os.truncate(path, size)
        except OSError:
            pass
        raise


def _make_dirs(folder: Path, created: list[Path]) -> None:
    """Create ``folder`` and its missing parents, recording each one created."""
    missing: list[Path] = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        created.append(d)


def _undo(created_files: list[Path], created_dirs: list[Path]) -> None:
    """Best effort: remove what this call created, newest first."""
    for f in reversed(created_files):
        try:
            f.unlink()
        except OSError:
            pass
    for d in reversed(created_dirs):
        try:
            d.rmdir()
        except OSError:
            pass
