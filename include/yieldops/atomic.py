"""Atomic file-system writes: write aside, then rename into place.

A reader sees the old content or the new, never half a file. ``durable`` writes (and
every staged folder: curated data) are flushed to disk before the rename and the rename
itself after, so a crash cannot leave a name whose data was never written: use it for
what a ledger entry will point at.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o644  # what open() gives under the usual umask: mkstemp's files are private


def write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    with _written_aside(path, durable) as file:
        file.write(data)


def write_text(path: Path, text: str, durable: bool = False) -> None:
    write_bytes(path, text.encode("utf-8"), durable)


def copy_stream(source: BinaryIO, path: Path, durable: bool = False) -> None:
    with _written_aside(path, durable) as file:
        shutil.copyfileobj(source, file)


@contextmanager
def _written_aside(path: Path, durable: bool) -> Iterator[BinaryIO]:
    """A temporary file ``.<name>.<8 random characters>`` beside ``path`` that replaces it
    when the block succeeds; removed when it fails."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if durable:
        _fsync_dir(path.parent)


@contextmanager
def staged_dir(dest: Path, replaces: Sequence[Path] = ()) -> Iterator[Path]:
    """A fresh folder beside ``dest`` that replaces ``dest`` when the block succeeds.

    On error the staged folder is removed and ``dest`` is left as it was, so
    readers see the old content or the new, never a mix, and a retry
    replaces instead of adding. Folders in ``replaces`` (earlier versions kept
    elsewhere) are moved aside just before ``dest`` moves in and then removed: a
    reader that skips hidden names sees the old version or the new, never both.
    The staged files are on disk before ``dest`` names them (durable, as above).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield staged
        _fsync_tree(staged)
        aside = [_move_aside(old) for old in (dest, *replaces) if old.exists()]
        os.replace(staged, dest)
        _fsync_dir(dest.parent)
        for old in aside:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _move_aside(folder: Path) -> Path:
    hidden = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    os.replace(folder, hidden)
    return hidden


def _fsync_tree(folder: Path) -> None:
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            _fsync(os.path.join(dirpath, name))
        _fsync_dir(Path(dirpath))


def _fsync_dir(folder: Path) -> None:
    """Make the names in ``folder`` (a rename into it) durable."""
    _fsync(folder, os.O_DIRECTORY)


def _fsync(path: str | Path, flags: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
