"""Exception hierarchy, mapped to exit codes by the CLI (the pip-tools pattern).

* :class:`InputError` and subclasses — bad input (config, dataset, corpus,
  baseline, template, flags). Exit code 2. The message is one line that names
  the file and, where there is one, the key.
* :class:`OutputError` — a file llmops writes cannot be written (read-only
  or full disk) or would overwrite an input. Exit code 2, naming the path.
* :class:`RunIncomplete` — the run could not complete (too many provider
  errors, too many unscored judge verdicts). Exit code 3. Never a pass, never a
  regression.
"""

from __future__ import annotations

from pathlib import Path


class LlmopsError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 2


class InputError(LlmopsError):
    """Bad user input. ``InputError(path, key, message)`` renders as
    ``path: key: message`` (one line; ``key`` may be ``None``)."""

    exit_code = 2

    def __init__(self, path: str | Path | None, key: str | None, message: str):
        self.path = str(path) if path is not None else None
        self.key = key
        self.message = " ".join(str(message).split())  # always one line
        parts = [p for p in (self.path, key, self.message) if p]
        super().__init__(": ".join(parts))


class ConfigError(InputError):
    """The YAML configuration (or a prompt template it names) is invalid."""


class DatasetError(InputError):
    """The eval set or the retrieval corpus is missing, malformed or empty."""


class BaselineError(InputError):
    """The baseline file is missing, malformed, of another schema version, or
    was made on another dataset."""


class GitError(InputError):
    """A git repository, revision or command that cannot be used: not a
    repository, git missing, a ref that names no commit (``--baseline-ref``)."""


class OutputError(InputError, OSError):
    """A file llmops writes (run record, report, baseline, cache) cannot be
    written: a read-only or full disk, a parent that is not a folder, or a
    path that would overwrite one of the run's own inputs. Exit code 2; the
    message names the path. Also an :class:`OSError`, so code catching the
    underlying write failure keeps working."""


class RunIncomplete(LlmopsError):
    """The run could not complete; exit code 3. ``record`` holds the partial
    run record when one exists."""

    exit_code = 3

    def __init__(self, message: str, record=None):
        self.record = record
        super().__init__(" ".join(str(message).split()))


class Interrupted(LlmopsError):
    """The user pressed Ctrl-C; exit code 130. ``record`` is the partial run."""

    exit_code = 130

    def __init__(self, message: str = "interrupted", record=None):
        self.record = record
        super().__init__(message)
