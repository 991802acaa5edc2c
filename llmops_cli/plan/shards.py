"""Shards: one run of the eval set split over n jobs (``llmops eval --shard
k/n``), merged back into one record by :mod:`llmops_cli.jobs.merge`.

**Membership.** Case ``id`` belongs to shard ``k`` of ``n`` (1-based) when
``int(sha256(id), 16) % n == k - 1`` (SHA-256 of the id's UTF-8 text). It
depends on the id and ``n`` alone, so the shards partition the eval set, and
adding or removing cases moves no other case to another shard (their cached
answers stay where the shard's job finds them).

**What is split.** The eval set exactly as an unsharded run would run it —
loaded, mapped, sampled (``dataset.sample``) and limited (``dataset.limit``,
``--limit``) — then each case goes to its shard. A shard's record keeps the
*full* set's dataset hash (so shards of one run share it, and the baseline
check still applies to the merged record) and a ``shard`` block
(:class:`~llmops_cli.record.schema.ShardInfo`): index, count, the full set's case
count and each case's position in the full set, from which the merge checks
completeness and restores the unsharded order.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Sequence

from llmops_cli.core.errors import InputError

if TYPE_CHECKING:
    from llmops_cli.plan.dataset import Case
    from llmops_cli.record.schema import ShardInfo

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
MAX_SHARDS = 1000


def parse_shard(spec: str | tuple[int, int], key: str = "--shard") -> tuple[int, int]:
    """``(k, n)`` from ``"k/n"`` (or a ``(k, n)`` pair), with 1 ≤ k ≤ n ≤
    :data:`MAX_SHARDS`.

    Raises:
        InputError: not of the form ``k/n``, or out of range (exit 2; the
            message names ``key``)."""
    if isinstance(spec, tuple):
        k, n = spec
    else:
        m = _SPEC.match(str(spec))
        if not m:
            raise InputError(None, key, f"expected K/N, e.g. 2/3 (shard 2 of 3), got {spec!r}")
        k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= n <= MAX_SHARDS:
        raise InputError(None, key, f"the number of shards must be 1 to {MAX_SHARDS}, got {n}")
    if not 1 <= k <= n:
        raise InputError(None, key, f"the shard must be 1 to {n} (1-based), got {k}/{n}")
    return k, n


def shard_of(case_id: str, count: int) -> int:
    """The shard (1-based, of ``count``) that case ``case_id`` belongs to."""
    return int(hashlib.sha256(case_id.encode("utf-8")).hexdigest(), 16) % count + 1


def select(cases: Sequence[Case], index: int, count: int) -> tuple[list[Case], ShardInfo]:
    """The cases of shard ``index`` of ``count`` (file order kept) and the
    record's ``shard`` block: ``total`` = ``len(cases)``, ``positions`` = each
    selected case's 0-based position in ``cases``. A shard may be empty."""
    from llmops_cli.record.schema import ShardInfo

    positions = [i for i, c in enumerate(cases) if shard_of(c.id, count) == index]
    info = ShardInfo(index=index, count=count, total=len(cases), positions=positions)
    return [cases[i] for i in positions], info


def check_shard_option(opts) -> tuple[int, int] | None:
    """An eval's ``opts.shard`` (:class:`~llmops_cli.jobs.evaluate.EvalOptions`) as
    ``(k, n)`` (None without one).

    Raises:
        InputError: not ``k/n`` in range, or with an option a shard cannot
            take: ``update_baseline``/``from_run`` (a shard is not the eval
            set), ``junit``/``markdown`` (a shard is not gated), a candidate."""
    if not opts.shard:
        return None
    shard = parse_shard(opts.shard)
    if opts.update_baseline or opts.from_run:
        raise InputError(None, "--shard", "a shard is part of the eval set and cannot become the baseline: merge the "
                         "shards (llmops merge), then llmops baseline update CONFIG --from-run MERGED.json")
    for key, given in (("--junit", opts.junit), ("--markdown", opts.markdown), ("--comment", opts.comment),
                       ("--html", opts.html), ("--candidate", opts.candidate)):
        if given:
            raise InputError(None, key, "a shard is not gated: gate the merged shards with llmops gate")
    return shard
