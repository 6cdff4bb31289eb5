"""The local engine: one machine, batches processed in parallel worker processes.

The plan is a list of *passes* over the data. Row stages between two global stages run in
one pass, fused; a global stage's ``summarize`` runs at the end of the pass before it and its
``apply`` at the start of the pass after it, so ``k`` global stages cost ``k + 1`` passes.
Between passes each batch lives in an Arrow IPC file in the work folder, so memory holds a few
batches per worker, not the dataset, and partials travel instead of rows.

Output never depends on the batch size or the worker count: rows keep their ingest order, the
results of the batches are gathered in order, and stages decide from content and ``_order``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from winnow import schema
from winnow.errors import InvariantError, WorkerError
from winnow.interrupts import sigint_deferred
from winnow.stages.base import GlobalStage, Rescan, RowStage, Stage, unwrap

log = logging.getLogger(__name__)

INGEST = "ingest"


@dataclass
class StageStats:
    """Rows in and out, seconds of work and the count of each rejection reason, for one step."""

    name: str
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    #: rows written to rejected/; must equal ``removed`` (checked at the end of every run)
    rejected: int = 0
    #: changes to kept rows (redactions, fixes), by kind
    events: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def removed(self) -> int:
        return self.rows_in - self.rows_out

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "removed": self.removed,
            "seconds": round(self.seconds, 3),
            "reasons": dict(self.reasons.most_common()),
            "events": dict(self.events.most_common()),
        }


@dataclass
class EngineOutput:
    """Where the kept rows and the rejected rows of a run are, and what each step did."""

    batches: list[Path]
    #: one entry per step (0 = ingest, then the stages in order): the files of rejected rows
    rejected: list[list[Path]]
    stats: list[StageStats]
    #: tables global stages explain themselves with: (step, stage, table name, file)
    tables: list[tuple[int, str, str, Path]] = field(default_factory=list)


@dataclass
class _Pass:
    apply: tuple[int, GlobalStage] | None = None
    rows: list[tuple[int, RowStage]] = field(default_factory=list)
    summarize: tuple[int, GlobalStage] | None = None

    def empty(self) -> bool:
        return self.apply is None and not self.rows and self.summarize is None


@dataclass
class _Task:
    index: int
    source: Path
    target: Path
    work: Path
    plan: _Pass
    state: Path | None


@dataclass
class _RescanTask:
    source: Path
    stage: GlobalStage
    request: Path


@dataclass
class _TaskResult:
    rows: int
    rejected: dict[int, Path]
    stats: dict[int, StageStats]
    partial: Any = None


def plan(stages: Sequence[Stage]) -> list[_Pass]:
    """Group the stages into passes (see the module docstring). Steps count from 1."""
    passes: list[_Pass] = []
    current = _Pass()
    for step, stage in enumerate(stages, start=1):
        if isinstance(stage, GlobalStage):
            current.summarize = (step, stage)
            passes.append(current)
            current = _Pass(apply=(step, stage))
        elif isinstance(stage, RowStage):
            current.rows.append((step, stage))
        else:
            raise TypeError(f"{stage!r} is neither a RowStage nor a GlobalStage")
    passes.append(current)
    return [p for p in passes if not p.empty()]


class LocalEngine:
    """Run stages over batches with ``workers`` processes (1 = in this process).

    Args:
        workers: worker processes; default: the machine's cores.
        progress: show progress bars (tqdm: terminal and Jupyter).
    """

    def __init__(self, workers: int | None = None, progress: bool = True) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.progress = progress

    def run(
        self,
        ingest: Iterable[tuple[pa.Table, pa.Table]],
        stages: Sequence[Stage],
        work: Path,
    ) -> EngineOutput:
        """Write the ingested batches into ``work``, then run ``stages`` pass by pass.

        ``ingest`` yields ``(rows, rejected)`` pairs of canonical tables in source order.
        """
        work.mkdir(parents=True, exist_ok=True)
        stats = [StageStats(INGEST)] + [StageStats(s.name) for s in stages]
        rejected: list[list[Path]] = [[] for _ in stats]
        tables: list[tuple[int, str, str, Path]] = []
        batches = self._ingest(ingest, work / "p0", stats[0], rejected[0])
        executor: Executor | None = None
        try:
            for number, step in enumerate(plan(stages), start=1):
                state_path = None
                if step.apply is not None:
                    state_path = work / f"state-{step.apply[0]:02d}.pkl"
                if len(batches) > 1 and self.workers > 1 and executor is None:
                    executor = _pool(self.workers)
                out_dir = work / f"p{number}"
                out_dir.mkdir()
                tasks = [_Task(i, src, out_dir / src.name, work, step, state_path) for i, src in enumerate(batches)]
                partials = []
                for task, result in zip(tasks, self._map(executor, tasks, _describe(step))):
                    for s, path in sorted(result.rejected.items()):
                        rejected[s].append(path)
                    for s, st in result.stats.items():
                        _add(stats[s], st)
                    partials.append(result.partial)
                    task.source.unlink()
                batches = [t.target for t in tasks]
                if step.summarize is not None:
                    s, stage = step.summarize
                    started = time.perf_counter()
                    result = stage.combine(partials)
                    del partials
                    if isinstance(result, Rescan):
                        result = self._rescan(executor, s, stage, result, batches, work)
                    combined = unwrap(result)
                    stats[s].seconds += time.perf_counter() - started
                    with open(work / f"state-{s:02d}.pkl", "wb") as f:
                        pickle.dump(combined.state, f, protocol=pickle.HIGHEST_PROTOCOL)
                    for name, table in combined.tables.items():
                        path = work / "tables" / f"{s:02d}-{stage.name}-{name}.arrow"
                        write_ipc(table, path)
                        tables.append((s, stage.name, name, path))
        except BaseException as e:
            if executor is not None:
                _stop(executor)
                executor = None
            if isinstance(e, BrokenProcessPool):
                raise WorkerError(_worker_died(_describe(step))) from e
            raise
        finally:
            if executor is not None:
                executor.shutdown()
        _check_conservation(stats)
        return EngineOutput(batches, rejected, stats, tables)

    def _ingest(
        self, ingest: Iterable[tuple[pa.Table, pa.Table]], out: Path, stats: StageStats, rejected: list[Path]
    ) -> list[Path]:
        out.mkdir()
        files = []
        order = 0
        started = time.perf_counter()
        bar = _bar(self.progress, "ingest", unit=" rows")
        for index, (rows, bad) in enumerate(ingest):
            rows = rows.append_column(schema.ORDER, pa.array(range(order, order + rows.num_rows), pa.int64()))
            order += rows.num_rows
            stats.rows_in += rows.num_rows + bad.num_rows
            stats.rows_out += rows.num_rows
            stats.rejected += bad.num_rows
            if bad.num_rows:
                path = out.parent / "rejected" / f"00-{index:06d}.arrow"
                write_ipc(bad, path)
                rejected.append(path)
                stats.reasons.update(bad.column("reason").to_pylist())
            if rows.num_rows:
                path = out / f"{index:06d}.arrow"
                write_ipc(rows, path)
                files.append(path)
            bar.update(rows.num_rows + bad.num_rows)
        bar.close()
        stats.seconds = time.perf_counter() - started
        return files

    def _rescan(
        self, executor: Executor | None, step: int, stage: GlobalStage, rescan: Rescan, batches: list[Path], work: Path
    ) -> Any:
        """A read-only pass for a stage that needs a second look at some rows (see ``Rescan``)."""
        request = work / f"request-{step:02d}.pkl"
        with open(request, "wb") as f:
            pickle.dump(rescan.request, f, protocol=pickle.HIGHEST_PROTOCOL)
        tasks = [_RescanTask(path, stage, request) for path in batches]
        bar = _bar(self.progress and bool(tasks), f"{stage.name} (second look)", total=len(tasks), unit=" batches")
        partials = []
        for partial in executor.map(_rescan_task, tasks) if executor is not None else map(_rescan_task, tasks):
            partials.append(partial)
            bar.update(1)
        bar.close()
        return stage.finish(partials, rescan.carry)

    def _map(self, executor: Executor | None, tasks: list[_Task], what: str) -> Iterator[_TaskResult]:
        bar = _bar(self.progress and bool(tasks), what, total=len(tasks), unit=" batches")
        if executor is not None:
            # map() submits every task now, starting the workers: a worker whose start is cut short
            # is not yet known to the pool, so `_stop` could not end it
            with sigint_deferred():
                results: Iterator[_TaskResult] = executor.map(_run_task, tasks)
        else:
            results = map(_run_task, tasks)
        for result in results:
            bar.update(1)
            yield result
        bar.close()


# -- the work of one batch (runs in a worker) --------------------------------------------------

_STAGES: dict[tuple[str, str], Stage] = {}
_STATE: tuple[Path | None, Any] = (None, None)


def _run_task(task: _Task) -> _TaskResult:
    table = read_ipc(task.source)
    rejected: dict[int, Path] = {}
    stats: dict[int, StageStats] = {}

    def record(step: int, stage: Stage, outcome: Any, rows_in: int, started: float) -> pa.Table:
        st = stats.setdefault(step, StageStats(stage.name))
        st.rows_in += rows_in
        st.rows_out += outcome.kept.num_rows
        st.seconds += time.perf_counter() - started
        st.reasons.update(outcome.counts)
        st.events.update(outcome.events)
        st.rejected += outcome.rejected.num_rows
        if outcome.rejected.num_rows:
            path = task.work / "rejected" / f"{step:02d}-{task.index:06d}.arrow"
            write_ipc(outcome.rejected, path)
            rejected[step] = path
        return outcome.kept

    if task.plan.apply is not None:
        step, stage = task.plan.apply
        glob = _cached(stage)
        started = time.perf_counter()
        table = record(step, glob, glob.apply(table, _load_state(task.state)), table.num_rows, started)
    for step, row_stage in task.plan.rows:
        stage = _cached(row_stage)
        started = time.perf_counter()
        table = record(step, stage, stage.process(table), table.num_rows, started)
    partial = None
    if task.plan.summarize is not None:
        step, stage = task.plan.summarize
        glob = _cached(stage)
        started = time.perf_counter()
        partial = glob.summarize(table)
        stats.setdefault(step, StageStats(glob.name)).seconds += time.perf_counter() - started
    write_ipc(table, task.target)
    return _TaskResult(table.num_rows, rejected, stats, partial)


def _rescan_task(task: _RescanTask) -> Any:
    return _cached(task.stage).rescan(read_ipc(task.source), _load_state(task.request))


def _cached(stage: Any) -> Any:
    """One instance per stage config per worker, set up once (heavy resources load lazily)."""
    key = (f"{type(stage).__module__}.{type(stage).__qualname__}", repr(stage.to_config()))
    if key not in _STAGES:
        stage.setup()
        _STAGES[key] = stage
    return _STAGES[key]


def _load_state(path: Path | None) -> Any:
    global _STATE
    if _STATE[0] != path:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            _STATE = (path, pickle.load(f))
    return _STATE[1]


# -- helpers -----------------------------------------------------------------------------------


def write_ipc(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)


def read_ipc(path: Path) -> pa.Table:
    with ipc.open_file(str(path)) as reader:
        return reader.read_all()


def read_batches(paths: Iterable[Path]) -> Iterator[pa.Table]:
    for path in paths:
        yield read_ipc(path)


def _add(total: StageStats, part: StageStats) -> None:
    total.rows_in += part.rows_in
    total.rows_out += part.rows_out
    total.seconds += part.seconds
    total.reasons.update(part.reasons)
    total.events.update(part.events)
    total.rejected += part.rejected


def _check_conservation(stats: list[StageStats]) -> None:
    """Every step: rows in = rows out + rows rejected; consecutive steps connect."""
    for st in stats:
        if st.removed != st.rejected:
            raise InvariantError(
                f"stage '{st.name}' removed {st.removed} rows but rejected {st.rejected}: rows were lost "
                "without a reason; this is a bug in the stage, please report it"
            )
    for before, after in itertools.pairwise(stats):
        if after.rows_in != before.rows_out:
            raise InvariantError(
                f"rows lost between '{before.name}' ({before.rows_out} out) and "
                f"'{after.name}' ({after.rows_in} in); this is a bug in winnow, please report it"
            )


def _describe(step: _Pass) -> str:
    names = ([f"{step.apply[1].name}"] if step.apply else []) + [s.name for _, s in step.rows]
    if step.summarize:
        names.append(f"{step.summarize[1].name} (scan)")
    return " → ".join(names)


def _worker_died(what: str) -> str:
    """What to say when a worker process vanished, with the causes a user can act on."""
    return (
        f"a worker process died during {what}; nothing was written. If memory ran out, use fewer workers "
        "or smaller batches; a Python script must start the run under `if __name__ == '__main__':` "
        "(workers import it)"
    )


def _init_worker(parent: Any) -> None:
    # Ctrl-C goes to the whole process group; the parent decides, the workers must not print
    # a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker waits on its task queue forever and the fork server lives as long as a worker
    # does, so a parent killed with SIGKILL would leave both behind. ``parent`` is the read end
    # of a pipe only the parent writes to: it reads EOF the moment the parent is gone.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: Any) -> None:
    with contextlib.suppress(EOFError, OSError):
        parent.recv_bytes()
    os._exit(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["winnow.stages", "winnow.engines.local"])
    _start_forkserver()
    alive_r, alive_w = ctx.Pipe(duplex=False)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(alive_r,))
    executor._winnow_alive = alive_w  # type: ignore[attr-defined]  # held open as long as the pool
    return executor


def _start_forkserver() -> None:
    """Start the fork server with SIGINT ignored: the disposition survives its ``exec``, so a
    Ctrl-C while it imports the preloaded modules cannot print a traceback from it (it ignores
    SIGINT only once its imports are done); its workers inherit it too. A Ctrl-C meant for this
    process in that moment is held back (blocked, so not discarded) and delivered after."""
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():  # no Ctrl-C to guard against
        forkserver.ensure_running()
        return
    with sigint_deferred():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, previous)


def _stop(executor: Executor) -> None:
    """Stop at once: cancel queued batches, end the workers, and give the pool's manager thread
    a moment to close its queues. It unlinks their named semaphores as it goes; a process that
    exits in the middle of that leaves the resource tracker warning of a leaked semaphore."""
    processes = list(getattr(executor, "_processes", {}).values())
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    if manager is not None:
        manager.join(timeout=_STOP_GRACE)


#: seconds `_stop` waits for the pool to wind down (it takes milliseconds once the workers are gone)
_STOP_GRACE = 1.0


def _bar(enabled: bool, desc: str, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, **kwargs)
