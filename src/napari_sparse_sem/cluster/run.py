"""Drive the blocks of one run on a ``distributed`` client with the project's progress/cancel protocol.

:func:`run_blocks` submits every unfinished block as a task, yields one :class:`~napari_sparse_sem.runtime.Progress`
per finished or failed block (and a heartbeat while blocks run, so a Cancel is seen within a second even when one
block takes minutes) and returns a :class:`BlockSummary`. A block that raises is recorded with its error and the others
go on; a worker that dies has its block retried by the scheduler (``distributed.scheduler.allowed-failures``).
Closing the generator (Cancel, Ctrl-C, an error on the consumer's side) sets the run's stop event, so running tasks
stop at their next slice, and cancels the futures; finished blocks stay in the store.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from napari_sparse_sem.cluster.store import RunRecord
from napari_sparse_sem.recon.blocks import Block
from napari_sparse_sem.runtime import Job, Progress

__all__ = ["BlockDone", "BlockFailed", "BlockSummary", "ClusterStarted", "run_blocks"]

HEARTBEAT_S = 0.25


@dataclass(frozen=True)
class ClusterStarted:
    """First event of a cluster run: where its dashboard is and how many workers it has."""

    dashboard: str | None
    workers: int
    blocks: int
    already_done: int


@dataclass(frozen=True)
class BlockDone:
    """A block finished: its key and what its worker reported (seconds, worker, device, ...)."""

    key: str
    info: dict[str, Any]


@dataclass(frozen=True)
class BlockFailed:
    """A block failed: its key and the error, one line."""

    key: str
    error: str


@dataclass
class BlockSummary:
    """How a run ended: blocks finished in this run, before it (resumed) and failed (key → error)."""

    total: int
    finished: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def new_stop_event() -> str:
    """A fresh name for a run's stop event."""
    return f"sparse-sem-stop-{uuid.uuid4().hex[:12]}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def run_blocks(
    client: Any,
    work: Callable[[Any, Block], dict[str, Any]],
    task: Any,
    blocks: Sequence[Block],
    record: RunRecord,
    *,
    stop_event: str | None,
    name: str = "block",
) -> Job[BlockSummary]:
    """Run ``work(task, block)`` for every block not yet recorded as done in ``record``; see the module docstring."""
    from distributed import Event

    started = time.perf_counter()
    done_before = set(record.done())
    summary = BlockSummary(total=len(blocks), resumed=[b.key for b in blocks if b.key in done_before])
    todo = [b for b in blocks if b.key not in done_before]
    workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    yield Progress(
        len(summary.resumed),
        len(blocks),
        f"{len(todo)} block(s) to run on {workers} worker(s)"
        + (f", {len(summary.resumed)} already done" if summary.resumed else ""),
        ClusterStarted(getattr(client, "dashboard_link", None), workers, len(blocks), len(summary.resumed)),
    )
    block_of = {client.submit(work, task, b, key=f"{name}-{b.key}-{uuid.uuid4().hex[:8]}", pure=False): b for b in todo}
    futures = list(block_of)
    pending = set(futures)
    try:
        last = time.monotonic()
        while pending:
            # a poll of the futures' local state, not distributed.as_completed: that needs a default client, and ours
            # must not be one (napari's own dask arrays would be shipped to the cluster)
            batch = [future for future in futures if future in pending and future.done()]
            if not batch:
                if time.monotonic() - last >= HEARTBEAT_S:
                    last = time.monotonic()
                    finished = len(summary.finished) + len(summary.resumed) + len(summary.failed)
                    yield Progress(finished, len(blocks), f"{len(pending)} block(s) running or waiting")
                time.sleep(0.05)
                continue
            for future in batch:
                pending.discard(future)
                block = block_of[future]
                event: BlockDone | BlockFailed
                if future.status == "finished":
                    info = future.result()
                    summary.finished.append(block.key)
                    event = BlockDone(block.key, info)
                    message = f"block {block.key}: {info.get('seconds', 0):.1f} s on {info.get('worker', '?')}"
                else:
                    exc = future.exception()
                    error = _one_line(exc)
                    summary.failed[block.key] = error
                    detail = "".join(traceback.format_exception(exc))[-4000:]
                    record.mark_failed(block.key, f"{error}\n{detail}")
                    event = BlockFailed(block.key, error)
                    message = f"block {block.key} failed: {error}"
                future.release()
                last = time.monotonic()
                finished = len(summary.finished) + len(summary.resumed) + len(summary.failed)
                yield Progress(finished, len(blocks), message, event)
    finally:
        if pending:
            if stop_event:
                try:
                    Event(stop_event, client=client).set()
                except Exception:  # the scheduler may be gone already (lost connection); cancelling is all we can do
                    pass
            client.cancel(list(pending), force=True)
        summary.seconds = time.perf_counter() - started
    return summary
