"""Atomic file-system writes: write aside, then rename into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_text(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as f:
        f.write(text)
    os.replace(f.name, path)


def copy_stream(source: BinaryIO, path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        shutil.copyfileobj(source, f)
    os.replace(f.name, path)


@contextmanager
def staged_dir(dest: Path, replaces: Sequence[Path] = ()) -> Iterator[Path]:
    """A fresh folder beside ``dest`` that replaces ``dest`` when the block succeeds.

    On error the staged folder is removed and ``dest`` is left as it was, so
    readers see the old content or the new, never a mix, and a retry
    replaces instead of adding. Folders in ``replaces`` (earlier versions kept
    elsewhere) are moved aside just before ``dest`` moves in and then removed: a
    reader that skips hidden names sees the old version or the new, never both.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield staged
        aside = [_move_aside(old) for old in (dest, *replaces) if old.exists()]
        os.replace(staged, dest)
        for old in aside:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _move_aside(folder: Path) -> Path:
    hidden = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    os.replace(folder, hidden)
    return hidden
