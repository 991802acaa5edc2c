"""Files: the one reader of tabular files (JSONL, CSV, JSON list of objects)
— eval sets and corpora —, atomic writes, and the checks on every file
llmops writes (run records, reports, the baseline, the cache): a path that
cannot be written, or that would overwrite one of the run's own inputs, is
exit 2 before any model call (:class:`~llmops_cli.core.errors.OutputError`, naming
the path and the option).
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from llmops_cli.core.errors import DatasetError, OutputError


# -- reading tabular files ---------------------------------------------------

LONE_SURROGATE = ("holds a lone UTF-16 surrogate (an escape \\ud800–\\udfff without its pair): not Unicode text, "
                  "so it could not be written to a record or sent as UTF-8")
# a lone UTF-16 surrogate: json.loads and YAML keep one from an escape such as "\\ud800" (json.loads pairs the halves
# of a valid pair into one character), but UTF-8 cannot encode it
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: Any) -> Any:
    """``value`` (a str, or a JSON value of dicts and lists) with every lone
    surrogate replaced by U+FFFD: an answer holding one could not be cached
    or recorded ("surrogates not allowed"), so the whole run ended in an
    internal error."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [valid_text(v) for v in value]
    return value


def lone_surrogate_key(value: Any, where: str = "") -> str | None:
    """The dotted key (``prompt.user``, ``checks.c.contains[1]``) of the first
    place in a parsed config or JSON value holding a lone surrogate, ``""``
    for the value itself, or None when there is none."""
    if isinstance(value, str):
        return where if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            key = f"{where}.{k}" if where else str(k)
            if isinstance(k, str) and _SURROGATE.search(k):
                return ascii(key)
            found = lone_surrogate_key(v, key)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = lone_surrogate_key(v, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def has_lone_surrogate(value: Any) -> bool:
    """Whether a JSON value holds a lone surrogate (:func:`lone_surrogate_key`)."""
    return lone_surrogate_key(value) is not None


def _may_escape_surrogate(text: str) -> bool:
    """Whether JSON ``text`` may escape a surrogate (``\\udXXX``): only then
    are its parsed rows searched for a lone one."""
    return "\\ud" in text or "\\uD" in text


def _infer_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "json"):
        return suffix
    raise DatasetError(path, None, f"cannot tell the format from the suffix {path.suffix!r}; set format: jsonl|csv|json")


def available_memory() -> int | None:
    """Bytes of memory this process can still use: the kernel's
    ``MemAvailable`` (free memory plus reclaimable caches), lowered to the
    room left under a cgroup v2 memory limit (containers, CI runners); else
    free physical pages (``os.sysconf``); ``None`` when unknown."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
                used = int(f.read())
            avail = min(avail, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return avail


def max_file_bytes() -> int | None:
    """The largest eval set or corpus file :func:`read_records` reads: half the
    memory still available (:func:`available_memory`), since the parsed rows
    take more room than the file's bytes. ``None``: no bound known."""
    avail = available_memory()
    return avail // 2 if avail is not None else None


def _csv_rows(f, path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(f)
    rows = []
    for row in reader:
        if None in row:  # DictReader's restkey: more cells than header names
            raise DatasetError(path, f"line {reader.line_num}", f"{len(reader.fieldnames or [])} columns in the header, "
                               f"{len(reader.fieldnames or []) + len(row[None])} in this row")
        rows.append(row)
    return rows


def read_records(path: Path, fmt: str | None = None, what: str = "file") -> list[dict[str, Any]]:
    """Read a JSONL, CSV or JSON (a list of objects) file into a list of dicts.

    The file is read once, as UTF-8 (a byte-order mark is dropped). JSONL
    lines end at ``\\n`` only (a ``\\r`` before it is dropped), so U+2028,
    U+2029 or U+0085 inside a JSON string stay part of it; CSV fields may hold
    quoted line breaks.

    Raises:
        DatasetError: missing file, a folder, a file larger than
            :func:`max_file_bytes`, unreadable or not UTF-8, a malformed line
            (named by its line number), a CSV row with more cells than the
            header, or a row that is not an object.
    """
    fmt = _infer_format(path, fmt)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DatasetError(path, None, f"{what} not found") from None
    except OSError as e:
        raise DatasetError(path, None, f"cannot read {what}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DatasetError(path, None, f"{what} is a directory")
    bound = max_file_bytes()
    if bound is not None and stat.S_ISREG(st.st_mode) and st.st_size > bound:
        raise DatasetError(path, None, f"{what} is {st.st_size / 1e6:,.1f} MB, more than half the memory available "
                           f"({2 * bound / 1e6:,.1f} MB); it is read whole, so it would not fit: use a smaller file")
    rows: list[Any]
    try:
        # newline="\n": lines end at "\n" only (str.splitlines would also cut at U+2028, U+2029, U+0085, \x1c-\x1e);
        # newline="": the csv module handles line ends itself, quoted line breaks included
        with open(path, encoding="utf-8-sig", newline="\n" if fmt == "jsonl" else "") as f:
            if fmt == "jsonl":
                rows = []
                for n, line in enumerate(f, 1):
                    line = line.removesuffix("\n").removesuffix("\r")
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DatasetError(path, f"line {n}", f"invalid JSON: {e.msg}") from None
                    if not isinstance(row, dict):
                        raise DatasetError(path, f"line {n}", "expected a JSON object")
                    if _may_escape_surrogate(line) and has_lone_surrogate(row):
                        raise DatasetError(path, f"line {n}", LONE_SURROGATE)
                    rows.append(row)
            elif fmt == "json":
                text = f.read()
                maybe_surrogate = _may_escape_surrogate(text)
                try:
                    rows = json.loads(text) if text.strip() else []
                except json.JSONDecodeError as e:
                    raise DatasetError(path, f"line {e.lineno}", f"invalid JSON: {e.msg}") from None
                del text
                if not isinstance(rows, list):
                    raise DatasetError(path, None, "expected a JSON list of objects")
                for n, row in enumerate(rows):
                    if maybe_surrogate and has_lone_surrogate(row):
                        raise DatasetError(path, f"[{n}]", LONE_SURROGATE)
                    if not isinstance(row, dict):
                        raise DatasetError(path, f"[{n}]", "expected a JSON object")
            else:
                try:
                    rows = _csv_rows(f, path)
                except csv.Error as e:
                    raise DatasetError(path, None, f"invalid CSV: {e}") from None
    except UnicodeDecodeError as e:
        raise DatasetError(path, None, f"cannot read {what}: not UTF-8 text ({e.reason})") from None
    except RecursionError:
        raise DatasetError(path, None, f"cannot read {what}: JSON nested too deeply") from None
    except OSError as e:
        raise DatasetError(path, None, f"cannot read {what}: {e.strerror or e}") from None
    return rows


# -- writing ---------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_chunks`)."""
    return atomic_write_chunks(path, (text,))


def atomic_write_chunks(path: str | Path, chunks: Iterable[str]) -> Path:
    """Write the strings ``chunks`` yields, in turn, to ``path`` atomically,
    never holding the whole text (a 10,000-case run record is ~20 MB): a
    temporary file in the same
    folder, flushed and fsync'd, then ``os.replace``. Creates parent folders.
    On failure the old file (if any) is left as it was and no temporary file
    remains.

    Raises:
        OutputError: the file cannot be written (read-only or full disk, a
            parent that is a file, ``path`` is a folder); names ``path``. It is
            an ``OSError`` too.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a committed baseline should be an ordinary file
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    return path


def check_writable(path: str | Path, key: str | None = None) -> Path:
    """Refuse, before anything runs, a file that cannot be written: ``path``
    is a folder, or its nearest existing folder is a file or read-only. Creates
    nothing. (A full disk shows only when writing: see
    :func:`~llmops_cli.record.schema.atomic_write_text`.)

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


def check_outputs(outputs: dict[str, str | Path | None], inputs: Mapping[str, str | Path | None]) -> None:
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
