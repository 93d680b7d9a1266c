"""Write-then-rename: a reader sees the old file or the new one, never a part of either."""

from __future__ import annotations

import io

import pytest

from yieldops import atomic


class _BrokenSource(io.RawIOBase):
    """A stream that gives some bytes, then fails like a dropped connection."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.calls += 1
        if self.calls > 1:
            raise ConnectionError("dropped")
        buffer[:3] = b"new"
        return 3


@pytest.mark.parametrize("durable", [False, True])
def test_written_file_replaces_the_old_one_and_is_readable_by_all(tmp_path, durable):
    path = tmp_path / "page.html"
    path.write_text("old")
    atomic.write_text(path, "new ü", durable=durable)
    assert path.read_text(encoding="utf-8") == "new ü"
    assert path.stat().st_mode & 0o777 == atomic.FILE_MODE
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_a_failed_copy_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "lot.stdf"
    path.write_bytes(b"old")
    with pytest.raises(ConnectionError):
        atomic.copy_stream(_BrokenSource(), path, durable=True)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["lot.stdf"]


def test_a_staged_folder_replaces_the_old_one_whole(tmp_path):
    dest = tmp_path / "file=abc"
    with atomic.staged_dir(dest) as staged:
        (staged / "parts.parquet").write_bytes(b"first")
    with pytest.raises(RuntimeError), atomic.staged_dir(dest) as staged:
        (staged / "parts.parquet").write_bytes(b"half")
        raise RuntimeError("decoding failed")
    assert (dest / "parts.parquet").read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["file=abc"]
