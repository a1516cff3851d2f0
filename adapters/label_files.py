"""Label files in one directory, written whole and made durable in batches.

The label effect waits until its file is on disk before the turn records it as kept. The
files are written by one thread of their own, so the event loop never waits on the disk;
each goes to a hidden temporary name and is renamed into place, so neither a reader nor a
crash ever finds a part-written label under its real name. What was asked for while the
thread was busy is written as one batch: the batch's files are synced together, renamed,
and the directory synced once, so purchases made together share one flush instead of
queueing for an fsync each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

Flush = Callable[[Sequence[int]], None]

# Threads that sync one batch's files at the same time. Synced one after another, each file
# waits for a journal commit of its own; synced together, the file system commits them in
# a few (measured on ext4: 200 files in 8-13 ms rather than 49 ms).
_SYNC_THREADS = 16


def sync_files(descriptors: Sequence[int], syncers: Executor) -> None:
    """Make written files' contents durable, all at once; raises the first OSError met,
    once every file was tried."""
    if len(descriptors) == 1:
        os.fsync(descriptors[0])
        return
    for _ in syncers.map(os.fsync, descriptors):
        pass


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a plain file name a label may have.

    Names starting with "." are left to the temporary files.
    """
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        raise ValueError(f"not a plain file name for a label: {name!r}")


@dataclass(eq=False)
class _Wanted:
    name: str
    label: bytes
    done: Future[str] = field(default_factory=Future)


@dataclass(eq=False)
class _Written:
    wanted: _Wanted
    temporary: Path
    descriptor: int


class LabelFiles:
    """Labels kept as files in ``directory`` (made when first needed).

    ``flush`` makes one batch's written files durable (called with their open descriptors,
    once per batch; :func:`sync_files` by default); ``max_batch`` bounds how many files one
    batch holds open.
    """

    def __init__(
        self, directory: str | Path, *, flush: Flush | None = None, max_batch: int = 256
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._directory = Path(directory)
        # Its threads start with the first batch of more than one file.
        self._syncers = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="orderd-label-sync")
        self._flush = flush or self._sync
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Wanted | None] = queue.SimpleQueue()
        # Taken around starting the writer, queueing and closing, so that nothing is
        # queued behind the writer's last item.
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._stopped: Future[None] = Future()
        self._closed = False

    async def keep(self, name: str, label: bytes) -> str:
        """Keep ``label`` as the file ``name`` in the directory; its absolute path once the
        file is whole and durable. See :class:`actors.ports.labels.LabelStore`."""
        check_name(name)
        wanted = _Wanted(name, label)
        with self._lock:
            if self._closed:
                raise RuntimeError("the label store is closed")
            if self._writer is None:
                # A daemon thread: one blocked on a dead disk must not hold the process.
                self._writer = threading.Thread(
                    target=self._run, name="orderd-label-writer", daemon=True
                )
                self._writer.start()
            self._queue.put(wanted)
        return await asyncio.wrap_future(wanted.done)

    async def close(self) -> None:
        """Write what was asked for, then stop the writer thread. Idempotent."""
        with self._lock:
            writer = self._writer
            if not self._closed and writer is not None:
                self._queue.put(None)
            self._closed = True
        if writer is not None:
            await asyncio.wrap_future(self._stopped)
            writer.join()

    # ---- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._write(self._next_batch()):
                pass
        finally:
            self._syncers.shutdown()
            self._stopped.set_result(None)

    def _sync(self, descriptors: Sequence[int]) -> None:
        sync_files(descriptors, self._syncers)

    def _next_batch(self) -> list[_Wanted | None]:
        """What was asked for since the last batch: waits for the first, takes the rest."""
        batch = [self._queue.get()]
        while batch[-1] is not None and len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[_Wanted | None]) -> bool:
        """Keep the batch's labels; False once ``close`` asked the thread to stop."""
        # A label whose purchase stopped waiting (its turn was cancelled) is not written:
        # the purchase is asked for again, with its label, when the turn is.
        wanted = [w for w in batch if w is not None and w.done.set_running_or_notify_cancel()]
        try:
            self._keep(wanted)
        except BaseException as exc:
            # Not an OSError of one file: a fault of this code, told to every waiter.
            for w in wanted:
                if not w.done.done():
                    w.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        return batch[-1] is not None

    def _keep(self, batch: list[_Wanted]) -> None:
        if not batch:
            return
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            directory = self._directory.resolve()
        except OSError as exc:
            for wanted in batch:
                self._fail(wanted, exc)
            return

        # Each waiter is told only once its temporary file is gone or renamed.
        written: list[_Written] = []
        try:
            for wanted in batch:
                file = self._write_file(directory, wanted)
                if file is not None:
                    written.append(file)
            self._flush([file.descriptor for file in written])
        except OSError as exc:
            for file in written:
                _remove(file.temporary)
            for file in written:
                self._fail(file.wanted, exc)
            return
        finally:
            for file in written:
                os.close(file.descriptor)

        placed: list[_Wanted] = []
        for file in written:
            try:
                os.replace(file.temporary, directory / file.wanted.name)
            except OSError as exc:
                _remove(file.temporary)
                self._fail(file.wanted, exc)
            else:
                placed.append(file.wanted)
        if not placed:
            return
        try:
            # The renames are durable with the directory: one sync for the whole batch.
            _sync_directory(directory)
        except OSError as exc:
            for wanted in placed:
                self._fail(wanted, exc)
            return
        for wanted in placed:
            wanted.done.set_result(str(directory / wanted.name))

    def _write_file(self, directory: Path, wanted: _Wanted) -> _Written | None:
        """The label written under a temporary name of its own, still open; None when it
        cannot be (the waiter is told why)."""
        # A name no other batch or process uses, so none writes into another's file.
        temporary = directory / f".{wanted.name}.{secrets.token_hex(4)}.partial"
        try:
            descriptor = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
            )
        except OSError as exc:
            self._fail(wanted, exc)
            return None
        try:
            _write_all(descriptor, wanted.label)
        except OSError as exc:
            os.close(descriptor)
            _remove(temporary)
            self._fail(wanted, exc)
            return None
        return _Written(wanted, temporary, descriptor)

    def _fail(self, wanted: _Wanted, exc: OSError) -> None:
        wanted.done.set_exception(_not_kept(wanted.name, self._directory, exc))


def _not_kept(name: str, directory: Path, exc: OSError) -> OSError:
    """The waiter's own error, naming the label and the directory; of the same OSError
    subclass as ``exc`` (PermissionError, ...), as the errno picks it."""
    what = f"label {name} not kept in {directory}"
    if exc.errno is None:
        error = OSError(f"{what}: {exc}")
    else:
        error = OSError(exc.errno, f"{what}: {exc.strerror}")
    error.__cause__ = exc
    return error


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    # A temporary name nobody reads: the label's own error is what the waiter hears.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
