"""Disk full and unwritable output: one clear error line, exit 1, no partial version, inputs and
earlier versions untouched.

Tests run as root, and root ignores ``chmod``, so permissions prove nothing here. Instead the
corpus goes on a real tiny tmpfs (``mount -t tmpfs -o size=…``; read-only with ``-o ro``), which
gives true ENOSPC / EROFS from the kernel at whatever write hits the limit. Where mounting is not
allowed the tmpfs tests skip, and ENOSPC is also simulated at the shard writer (always runs).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import winnow as wn
from tests.reliability._util import make_jsonl, no_partial_versions, run_winnow, write_pipeline
from winnow.errors import CorpusError


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the simulated ENOSPC test still runs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fails_cleanly(proc: subprocess.CompletedProcess[str], out: Path, reason: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot write a corpus version") and reason in lines[0], lines[0]
    if out.exists():
        no_partial_versions(out)
        assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")], list(out.iterdir())


@pytest.mark.parametrize("size", ["64k", "1m", "4m"])  # fails in ingest, in the stage pass, at the shards
def test_disk_full(tmp_path: Path, size: str) -> None:
    src = make_jsonl(tmp_path / "in.jsonl", 20_000)
    before = _sha(src)
    with tmpfs(tmp_path / "mnt", size) as mnt:
        out = mnt / "corpus"
        pipeline = write_pipeline(tmp_path / "p.yaml", [src], out)
        proc = run_winnow("run", str(pipeline), "--no-progress", "--workers", "2")
        _fails_cleanly(proc, out, "No space left on device")
        assert wn.Corpus(out).versions() == []
    assert _sha(src) == before


def test_disk_full_keeps_earlier_versions(tmp_path: Path) -> None:
    small = make_jsonl(tmp_path / "small.jsonl", 200)
    big = make_jsonl(tmp_path / "big.jsonl", 20_000, seed=1)
    with tmpfs(tmp_path / "mnt", "3m") as mnt:
        out = mnt / "corpus"
        ok = run_winnow("run", str(write_pipeline(tmp_path / "a.yaml", [small], out)), "--no-progress")
        assert ok.returncode == 0, ok.stderr
        table = wn.Corpus(out).load("v1", format="arrow")
        proc = run_winnow("run", str(write_pipeline(tmp_path / "b.yaml", [big], out)), "--no-progress")
        _fails_cleanly(proc, out, "No space left on device")
        assert wn.Corpus(out).versions() == ["v1"] and os.readlink(out / "latest") == "v1"
        assert wn.Corpus(out).load("v1", format="arrow").equals(table)
        # once there is room again, the next run works
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        again = run_winnow("run", str(tmp_path / "b.yaml"), "--no-progress")
        assert again.returncode == 0, again.stderr
        assert wn.Corpus(out).versions() == ["v1", "v2"]


def test_read_only_output(tmp_path: Path) -> None:
    src = make_jsonl(tmp_path / "in.jsonl", 100)
    with tmpfs(tmp_path / "mnt", "1m", read_only=True) as mnt:
        for out in (mnt / "corpus", mnt):
            proc = run_winnow("run", str(write_pipeline(tmp_path / "p.yaml", [src], out)), "--no-progress")
            _fails_cleanly(proc, out, "Read-only file system")


def test_simulated_enospc_at_the_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a tmpfs: the Parquet writer fails with ENOSPC half-way through the shards."""
    import winnow.corpus

    real = winnow.corpus.pq.ParquetWriter
    calls = []

    class Full(real):  # type: ignore[misc,valid-type]
        def write_table(self, *args: object, **kwargs: object) -> None:
            calls.append(1)
            if len(calls) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            super().write_table(*args, **kwargs)

    monkeypatch.setattr(winnow.corpus.pq, "ParquetWriter", Full)
    src = make_jsonl(tmp_path / "in.jsonl", 30_000)
    out = tmp_path / "corpus"
    with pytest.raises(CorpusError, match="No space left on device"):
        wn.Pipeline(inputs=[str(src)], stages=[{"exact_dedup": {}}], output=out).run(progress=False, workers=1)
    assert wn.Corpus(out).versions() == []
    assert [p.name for p in out.iterdir()] == [".lock"]
