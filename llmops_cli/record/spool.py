"""Case records kept on disk while a large run goes on, so that its memory
does not grow with everything each case carries.

A run of more cases than one chunk (:data:`llmops_cli.jobs.runner.CHUNK`)
plans, answers and scores them a chunk at a time. As each chunk finishes, its
case records go to a :class:`CaseSpool` — a temporary file holding each
case's JSON exactly as the run record writes it — and the run keeps, per
case, a :class:`CaseRow`: what a gate and the run's summaries read for every
case (id, output, error, scores, corpus statistics, reasons, slices). All
else (inputs, references, calls, raw responses, rendered messages,
retrieval, judge replies) is read back from the spool when asked for, so the
loaded eval set can be let go once every chunk is planned. Measured with
tracemalloc on 5,000 cases (four metrics, BLEU's statistics included): a row
holds about 0.8 KB, where a case record whose traces were released held
2.8 KB with its share of the eval set; a gated 100,000-case run peaked at
468 MB against 859 MB (``benchmarks/run.py --scale 100000``).

Saving a record copies each row's spooled text (:func:`~llmops_cli.record.schema.save_record`
calls :meth:`CaseRow.model_dump_json`), so the file is byte for byte what the
same record held whole would give. Rows are read-only: a case is scored
before it is spooled.
"""

from __future__ import annotations

import tempfile
import threading
from array import array
from typing import Any

from llmops_cli.core.errors import OutputError
from llmops_cli.record.compact import frozen
from llmops_cli.record.schema import CaseRecord


class CaseSpool:
    """An unnamed temporary file (removed by the system when closed or when
    the process ends) of case records' JSON texts, each as
    ``CaseRecord.model_dump_json(indent=1)`` gives it, in UTF-8.

    Raises:
        OutputError: the temporary directory (``$TMPDIR``, else the
            system's) cannot be written — when the spool is made or a case
            added (exit 2, naming the directory).
    """

    def __init__(self) -> None:
        try:
            self._file = tempfile.TemporaryFile(prefix="llmops-cases-")
        except OSError as e:
            raise _unwritable(e) from None
        self._starts = array("q")
        self._sizes = array("q")
        self._end = 0
        self._lock = threading.Lock()  # one seek-and-read at a time

    def __len__(self) -> int:
        return len(self._starts)

    def add(self, case: CaseRecord) -> CaseRow:
        """Write ``case`` (scored, final) and return its row."""
        data = case.model_dump_json(indent=1).encode("utf-8")
        with self._lock:
            try:
                self._file.seek(self._end)
                self._file.write(data)
            except OSError as e:
                raise _unwritable(e) from None
            self._starts.append(self._end)
            self._sizes.append(len(data))
            self._end += len(data)
            at = len(self._starts) - 1
        return CaseRow(self, at, case)

    def text(self, at: int) -> str:
        """The JSON text of the ``at``-th case added (0-based)."""
        with self._lock:
            self._file.seek(self._starts[at])
            data = self._file.read(self._sizes[at])
        return data.decode("utf-8")

    def load(self, at: int) -> CaseRecord:
        """The ``at``-th case added, read back whole (a fresh object each call)."""
        return CaseRecord.model_validate_json(self.text(at))

    def close(self) -> None:
        self._file.close()


def _unwritable(e: OSError) -> OutputError:
    return OutputError(tempfile.gettempdir(), None, f"cannot write the finished cases of a chunked run here "
                       f"(set TMPDIR to another folder): {e.strerror or e}")


class CaseRow:
    """One spooled case as a run keeps it in memory (see the module). Reads
    like a :class:`~llmops_cli.record.schema.CaseRecord`: ``id``,
    ``slices``, ``output``, ``error`` are held, and
    ``scores`` (metric → 0–1 score or None), ``stats``, ``reasons`` as
    read-only mappings (:class:`~llmops_cli.record.compact.FrozenMap`); any other field
    (``inputs``, ``references``, ``calls``, ``judges``, ``retrieval``,
    ``messages``) and model method
    (``model_dump``, ``without_traces``) reads the case back from its spool
    (a fresh object on each access: keep it in a variable when reading it
    twice). Assigning a field raises :class:`AttributeError`."""

    __slots__ = ("_spool", "_at", "id", "slices", "output", "error", "scores", "stats", "reasons")
    HELD = ("id", "slices", "output", "error", "scores", "stats", "reasons")

    def __init__(self, spool: CaseSpool, at: int, case: CaseRecord):
        set_ = object.__setattr__
        set_(self, "_spool", spool)
        set_(self, "_at", at)
        for name in self.HELD:
            set_(self, name, getattr(case, name))
        for name in ("scores", "stats", "reasons", "slices"):  # ~250 bytes less per case than their dicts
            set_(self, name, frozen(getattr(case, name)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a spooled case is read-only (setting {name!r})")

    def load(self) -> CaseRecord:
        """The whole case record, read back from the spool."""
        return self._spool.load(self._at)

    def model_dump_json(self, *, indent: int | None = None, **kw: Any) -> str:
        """The case's JSON: with ``indent=1`` and nothing else, the spooled
        text itself (what :func:`~llmops_cli.record.schema.save_record` writes)."""
        if indent == 1 and not kw:
            return self._spool.text(self._at)
        return self.load().model_dump_json(indent=indent, **kw)

    def __getattr__(self, name: str) -> Any:  # only for what is not held: read back from the spool
        if name.startswith("_"):  # a slot not yet set, a dunder: not a field
            raise AttributeError(name)
        return getattr(self.load(), name)

    def __repr__(self) -> str:
        return f"CaseRow({self.id!r}, spooled #{self._at})"


def whole(case: Any) -> Any:
    """``case`` with every field at hand: a :class:`CaseRow` read back from
    its spool once (a report reading many of its fields), anything else as
    it is."""
    return case.load() if isinstance(case, CaseRow) else case
