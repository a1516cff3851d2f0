"""Label files: whole under their own name, durable in batches, clear errors."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import pytest

from adapters.label_files import LabelFiles, sync_files

BOUND_S = 10.0  # no step of these tests waits longer than this


class Flushes:
    """A store's flush that records each batch's size. With ``hold_first`` the first flush
    waits for ``release()``, as a slow disk would hold it, so what is asked for meanwhile
    queues up; ``during`` runs inside every flush, before the files are synced (by
    :func:`sync_files` with ``syncers``, else one by one)."""

    def __init__(
        self,
        *,
        hold_first: bool = False,
        during: Callable[[], None] | None = None,
        fail: OSError | None = None,
        syncers: Executor | None = None,
    ) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self._released = threading.Event()
        if not hold_first:
            self._released.set()
        self._during = during
        self._fail = fail
        self._syncers = syncers

    def __call__(self, descriptors: Sequence[int]) -> None:
        self.sizes.append(len(descriptors))
        self.entered.set()
        if not self._released.wait(BOUND_S):
            raise AssertionError("the held flush was never released")
        if self._during is not None:
            self._during()
        if self._fail is not None:
            raise self._fail
        if self._syncers is not None:
            sync_files(descriptors, self._syncers)
            return
        for descriptor in descriptors:
            os.fsync(descriptor)

    def release(self) -> None:
        self._released.set()

    async def first_entered(self) -> None:
        """Wait (in a thread, the event being the writer thread's) for the first flush."""
        assert await asyncio.to_thread(self.entered.wait, BOUND_S)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "labels"


@pytest.fixture
async def make_store(directory: Path) -> AsyncIterator[Callable[..., LabelFiles]]:
    stores: list[LabelFiles] = []

    def make(flush: Callable[[Sequence[int]], None] | None = None, **options: int) -> LabelFiles:
        store = LabelFiles(directory, flush=flush, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def names_in(directory: Path) -> list[str]:
    """Every file in the directory, hidden ones too."""
    return sorted(os.listdir(directory))


def contents(path: Path | str) -> bytes:
    return Path(path).read_bytes()


def exists(path: Path) -> bool:
    return path.exists()


def kept_at(directory: Path, name: str) -> str:
    """The path the store answers for a label: absolute, links resolved."""
    return str(directory.resolve() / name)


def label(number: int) -> bytes:
    return b"%PDF-1.4\n" + f"label {number}\n".encode() * (number + 1) + b"%%EOF\n"


async def keep_behind_a_held_flush(
    store: LabelFiles, flushes: Flushes, first: tuple[str, bytes], *more: tuple[str, bytes]
) -> list[str | BaseException]:
    """Keep ``first`` alone, and ``more`` while its flush is held; every answer, in order."""
    held = asyncio.create_task(store.keep(*first))
    await flushes.first_entered()
    queued = [asyncio.create_task(store.keep(name, data)) for name, data in more]
    # Tasks start in the order they were made: by the time this runs, each one above
    # has queued its label.
    asyncio.get_running_loop().call_soon(flushes.release)
    return await asyncio.gather(held, *queued, return_exceptions=True)


async def test_a_label_is_kept_under_its_name_and_its_absolute_path_returned(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    store = make_store()
    path = await store.keep("ord_1-1.pdf", label(1))
    assert path == kept_at(directory, "ord_1-1.pdf")
    assert Path(path).is_absolute()
    assert contents(path) == label(1)
    assert names_in(directory) == ["ord_1-1.pdf"]  # no temporary file left behind


async def test_the_directory_is_made_when_the_first_label_comes(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    store = make_store()
    assert not exists(directory)
    await store.keep("ord_1-1.zpl", b"^XA^XZ")
    assert contents(directory / "ord_1-1.zpl") == b"^XA^XZ"


async def test_keeping_a_label_again_replaces_the_file(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    store = make_store()
    await store.keep("ord_1-1.pdf", label(1))
    await store.keep("ord_1-1.pdf", label(2))
    assert contents(directory / "ord_1-1.pdf") == label(2)
    assert names_in(directory) == ["ord_1-1.pdf"]


async def test_labels_asked_for_together_share_one_flush(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    with ThreadPoolExecutor(4) as syncers:
        flushes = Flushes(hold_first=True, syncers=syncers)
        store = make_store(flushes)
        wanted = [(f"ord_{n}-1.pdf", label(n)) for n in range(40)]
        paths = await keep_behind_a_held_flush(store, flushes, *wanted)
    # The first label's flush, then one for the 39 that queued behind it.
    assert flushes.sizes == [1, 39]
    assert paths == [kept_at(directory, name) for name, _ in wanted]
    for name, data in wanted:
        assert contents(directory / name) == data
    assert names_in(directory) == sorted(name for name, _ in wanted)


async def test_many_labels_at_once_are_kept_with_the_default_flush(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    store = make_store()
    wanted = [(f"ord_{n}-1.pdf", label(n)) for n in range(60)]
    paths = await asyncio.gather(*(store.keep(name, data) for name, data in wanted))
    assert paths == [kept_at(directory, name) for name, _ in wanted]
    for name, data in wanted:
        assert contents(directory / name) == data
    assert names_in(directory) == sorted(name for name, _ in wanted)


def test_sync_files_syncs_every_file_and_raises_the_error_one_meets(tmp_path: Path) -> None:
    descriptors = [
        os.open(tmp_path / f"f{n}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC) for n in range(8)
    ]
    unsyncable, writing_end = os.pipe()  # a pipe cannot be synced: EINVAL
    try:
        with ThreadPoolExecutor(4) as syncers:
            sync_files(descriptors, syncers)
            sync_files(descriptors[:1], syncers)
            with pytest.raises(OSError, match="Invalid argument") as raised:
                sync_files([*descriptors, unsyncable], syncers)
    finally:
        for descriptor in [*descriptors, unsyncable, writing_end]:
            os.close(descriptor)
    assert raised.value.errno == errno.EINVAL


async def test_a_batch_holds_at_most_max_batch_labels(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    flushes = Flushes(hold_first=True)
    store = make_store(flushes, max_batch=16)
    wanted = [(f"ord_{n}-1.pdf", label(n)) for n in range(41)]
    await keep_behind_a_held_flush(store, flushes, *wanted)
    assert flushes.sizes == [1, 16, 16, 8]
    assert names_in(directory) == sorted(name for name, _ in wanted)


async def test_nothing_is_under_the_label_name_until_its_batch_is_flushed(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    seen: list[tuple[bool, bytes, list[str]]] = []

    def look() -> None:
        hidden = [name for name in names_in(directory) if name.startswith(".")]
        seen.append(
            (exists(directory / "ord_2-1.pdf"), contents(directory / "ord_1-1.pdf"), hidden)
        )

    await make_store().keep("ord_1-1.pdf", b"first label")
    store = make_store(Flushes(during=look))
    await store.keep("ord_1-1.pdf", label(1))
    await store.keep("ord_2-1.pdf", label(2))
    # While each label is written but not yet durable: the new one is absent, the one
    # being replaced still whole, and the label written under a hidden temporary name.
    assert [(new, old) for new, old, _ in seen] == [(False, b"first label"), (False, label(1))]
    for _, _, hidden in seen:
        [temporary] = hidden
        assert temporary.endswith(".partial")
    assert contents(directory / "ord_1-1.pdf") == label(1)
    assert contents(directory / "ord_2-1.pdf") == label(2)
    assert names_in(directory) == ["ord_1-1.pdf", "ord_2-1.pdf"]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), OSError),
        (OSError(errno.EIO, "Input/output error"), OSError),
        (OSError(errno.EACCES, "Permission denied"), PermissionError),
    ],
)
async def test_a_failed_flush_keeps_nothing_and_says_which_label_and_why(
    make_store: Callable[..., LabelFiles], directory: Path, error: OSError, kind: type[OSError]
) -> None:
    await make_store().keep("ord_1-1.pdf", b"the label bought before")
    store = make_store(Flushes(fail=error))
    with pytest.raises(kind) as raised:
        await store.keep("ord_1-1.pdf", label(1))
    assert raised.value.errno == error.errno
    assert str(raised.value) == (
        f"[Errno {error.errno}] label ord_1-1.pdf not kept in {directory}: {error.strerror}"
    )
    with pytest.raises(OSError, match="not kept"):
        await store.keep("ord_2-1.pdf", label(2))
    # The file there before is untouched, the new one absent, no temporary file left.
    assert contents(directory / "ord_1-1.pdf") == b"the label bought before"
    assert names_in(directory) == ["ord_1-1.pdf"]


async def test_a_directory_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_bytes(b"")
    store = LabelFiles(tmp_path / "not-a-directory" / "labels")
    try:
        with pytest.raises(NotADirectoryError, match=r"label ord_1-1\.pdf not kept in .*labels"):
            await store.keep("ord_1-1.pdf", label(1))
    finally:
        await store.close()


async def test_a_label_that_cannot_be_written_fails_alone_in_its_batch(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    flushes = Flushes(hold_first=True)
    store = make_store(flushes)
    too_long = "x" * 250 + ".pdf"  # its temporary name is over the file system's limit
    answers = await keep_behind_a_held_flush(
        store,
        flushes,
        ("ord_0-1.pdf", label(0)),
        ("ord_1-1.pdf", label(1)),
        (too_long, label(2)),
        ("ord_3-1.pdf", label(3)),
    )
    assert flushes.sizes == [1, 2]  # the label not written is not flushed
    failed = answers[2]
    assert isinstance(failed, OSError)
    assert failed.errno == errno.ENAMETOOLONG
    assert f"label {too_long} not kept" in str(failed)
    assert names_in(directory) == ["ord_0-1.pdf", "ord_1-1.pdf", "ord_3-1.pdf"]
    assert contents(directory / "ord_3-1.pdf") == label(3)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden.pdf", "a/b.pdf", "../b.pdf", "a\0.pdf"])
async def test_a_name_that_is_not_a_plain_file_name_is_refused(
    make_store: Callable[..., LabelFiles], directory: Path, name: str
) -> None:
    store = make_store()
    with pytest.raises(ValueError, match="not a plain file name"):
        await store.keep(name, label(1))
    assert not exists(directory)


async def test_a_label_no_longer_waited_for_is_not_written(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    flushes = Flushes(hold_first=True)
    store = make_store(flushes)
    first = asyncio.create_task(store.keep("ord_0-1.pdf", label(0)))
    await flushes.first_entered()
    given_up = asyncio.create_task(store.keep("ord_1-1.pdf", label(1)))
    kept = asyncio.create_task(store.keep("ord_2-1.pdf", label(2)))
    # Called once both tasks have queued their label, while the writer is still held.
    asyncio.get_running_loop().call_soon(given_up.cancel)
    with pytest.raises(asyncio.CancelledError):
        await given_up
    flushes.release()
    await asyncio.gather(first, kept)
    assert names_in(directory) == ["ord_0-1.pdf", "ord_2-1.pdf"]


async def test_close_writes_what_was_asked_for_and_then_takes_nothing_more(
    make_store: Callable[..., LabelFiles], directory: Path
) -> None:
    flushes = Flushes(hold_first=True)
    store = make_store(flushes)
    first = asyncio.create_task(store.keep("ord_0-1.pdf", label(0)))
    await flushes.first_entered()
    queued = asyncio.create_task(store.keep("ord_1-1.pdf", label(1)))
    closing = asyncio.create_task(store.close())
    asyncio.get_running_loop().call_soon(flushes.release)
    await asyncio.gather(first, queued, closing)
    assert names_in(directory) == ["ord_0-1.pdf", "ord_1-1.pdf"]
    with pytest.raises(RuntimeError, match="closed"):
        await store.keep("ord_2-1.pdf", label(2))
    await store.close()  # closing again is harmless


async def test_a_store_never_used_closes_at_once_and_makes_nothing(tmp_path: Path) -> None:
    store = LabelFiles(tmp_path / "labels")
    await asyncio.wait_for(store.close(), BOUND_S)
    assert not exists(tmp_path / "labels")
