"""STDF decoding speed and memory: yieldops vs stdf-convert (Rust) vs pystdf, side by side.

Each engine decodes each real sample file in its own subprocess pinned to one
CPU core: one warm-up run (JIT compile, page cache), then the median of
several timed runs. Throughput counts decompressed bytes; peak RSS is the
worker process's high-water mark. Then one large file (the largest sample's records
repeated) shows the speed per record without the fixed cost per file, and growing
files written to Parquet show that memory does not grow with file size.

    python benchmarks/bench_stdf.py                 # all samples, all engines
    python benchmarks/bench_stdf.py --repeat 9 --pystdf-repeat 1
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT_SAMPLES = Path(
    os.environ.get("STDF_SAMPLES_DIR", HERE.parents[2] / "shared" / "stdf-samples")
)
ENGINES = ("yieldops", "stdf-convert", "pystdf")


# -- worker side: runs in a subprocess, prints JSON ------------------------------------------


def _decoder(engine: str):
    if engine == "yieldops":
        from yieldops.stdf.tables import read_tables

        return read_tables
    if engine == "stdf-convert":
        import stdf_convert

        return lambda path: stdf_convert.tables(str(path))
    if engine == "pystdf":
        return _pystdf_decode
    raise ValueError(engine)


def _pystdf_decode(path: Path) -> int:
    from pystdf.IO import Parser

    class Count:
        records = 0

        def after_send(self, source, data):
            Count.records += 1

        def __getattr__(self, name):
            return lambda *args: None

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        parser = Parser(inp=stream)
        parser.addSink(Count())
        parser.parse()
    return Count.records


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(engine: str, path: Path, repeat: int) -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    decode = _decoder(engine)
    rss_before = _max_rss_mib()
    decode(path)  # warm-up: JIT compile, file in page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        decode(path)
        times.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "rss_before": rss_before, "rss_peak": _max_rss_mib()}))


def memory_worker(path: Path, out: Path) -> None:
    from yieldops.stdf.tables import to_parquet

    to_parquet(path, out)
    print(json.dumps({"rss_peak": _max_rss_mib()}))


# -- driver side -----------------------------------------------------------------------------


def _run(args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, str(HERE), *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def facts_worker(path: Path) -> None:
    """Decompressed bytes and record count (from our record scan)."""
    from yieldops.stdf.scan import record_counts

    records = sum(record_counts(path).values())
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        size = len(stream.read())
    print(json.dumps({"size": size, "records": records}))


def speed(samples: list[Path], repeat: int, pystdf_repeat: int) -> dict[str, dict[str, float]]:
    header = f"{'file':32} {'MB':>6} {'records':>8} | " + " | ".join(
        f"{e:>12} MB/s  rec/s  RSS MiB" for e in ENGINES
    )
    print(header)
    print("-" * len(header))
    totals = {e: {"bytes": 0, "records": 0, "seconds": 0.0, "rss": 0.0} for e in ENGINES}
    for path in samples:
        facts = _run(["--facts-worker", str(path)])  # the driver itself stays small: RSS
        size, records = facts["size"], facts["records"]  # is inherited across fork+exec
        cells = []
        for engine in ENGINES:
            n = pystdf_repeat if engine == "pystdf" else repeat
            result = _run(["--worker", engine, str(path), "--repeat", str(n)])
            median = statistics.median(result["times"])
            t = totals[engine]
            t["bytes"] += size
            t["records"] += records
            t["seconds"] += median
            t["rss"] = max(t["rss"], result["rss_peak"])
            cells.append(
                f"{size / median / 1e6:12.1f} {records / median / 1e3:6.0f}k"
                f" {result['rss_peak']:8.0f}"
            )
        print(f"{path.name:32} {size / 1e6:6.2f} {records:8d} | " + " | ".join(cells))
    print("-" * len(header))
    summary = {}
    for engine, t in totals.items():
        summary[engine] = {
            "MB/s": t["bytes"] / t["seconds"] / 1e6,
            "records/s": t["records"] / t["seconds"],
            "peak RSS MiB": t["rss"],
        }
        print(
            f"{'all samples, ' + engine:42} {summary[engine]['MB/s']:8.1f} MB/s "
            f"{summary[engine]['records/s'] / 1e3:8.0f}k records/s  peak RSS {t['rss']:.0f} MiB"
        )
    ours = summary["yieldops"]["MB/s"]
    print(
        f"\nyieldops / stdf-convert: {ours / summary['stdf-convert']['MB/s']:.2f}x   "
        f"yieldops / pystdf: {ours / summary['pystdf']['MB/s']:.1f}x   (bar: >= 1x and >= 30x)"
    )
    return summary


def _repeated_file(sample: Path, copies: int, dest: Path) -> None:
    """A valid STDF file made of one FAR and the sample's other records ``copies`` times."""
    opener = gzip.open if sample.name.endswith(".gz") else open
    with opener(sample, "rb") as f:
        data = f.read()
    far = 4 + 2  # FAR is always a 4-byte header and a 2-byte body
    with open(dest, "wb") as out:
        out.write(data[:far])
        for _ in range(copies):
            out.write(data[far:])


def large_file_speed(sample: Path, copies: int, repeat: int) -> None:
    """One large file (a sample's records repeated): per-record speed, without the fixed
    cost per file that dominates the small samples (pystdf is left out: minutes)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{copies}.stdf"
        _repeated_file(sample, copies, path)
        size = path.stat().st_size
        speeds = {}
        for engine in ENGINES[:2]:
            result = _run(["--worker", engine, str(path), "--repeat", str(repeat)])
            speeds[engine] = size / statistics.median(result["times"]) / 1e6
        print(
            f"\none large file ({sample.name}'s records {copies} times, {size / 1e6:.1f} MB): "
            + ", ".join(f"{engine} {mbs:.1f} MB/s" for engine, mbs in speeds.items())
            + f"; yieldops / stdf-convert: {speeds['yieldops'] / speeds['stdf-convert']:.2f}x"
        )


def memory(sample: Path, copies: list[int]) -> None:
    print(f"\nto_parquet peak RSS on growing files (records of {sample.name} repeated)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in copies:
            path = Path(tmp) / f"x{n}.stdf"
            _repeated_file(sample, n, path)
            result = _run(["--memory-worker", str(path), str(Path(tmp) / f"out{n}")])
            print(
                f"  {path.stat().st_size / 1e6:8.1f} MB file"
                f" -> peak RSS {result['rss_peak']:6.0f} MiB"
            )
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--pystdf-repeat", type=int, default=3)
    parser.add_argument("--memory-copies", default="1,10,50")
    parser.add_argument("--large-copies", type=int, default=10)
    parser.add_argument("--worker", nargs=1, metavar="ENGINE")
    parser.add_argument("--memory-worker", action="store_true")
    parser.add_argument("--facts-worker", action="store_true")
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], args.paths[0], args.repeat)
    if args.facts_worker:
        return facts_worker(args.paths[0])
    if args.memory_worker:
        return memory_worker(args.paths[0], args.paths[1])
    samples = args.paths or sorted(
        p for p in args.samples.glob("*") if p.name.endswith((".stdf", ".stdf.gz", ".stdf.bz2"))
    )
    if not samples:
        sys.exit(f"no STDF samples in {args.samples} (set STDF_SAMPLES_DIR)")
    print(f"python {sys.version.split()[0]}, one core per worker, median of {args.repeat} runs "
          f"(pystdf: {args.pystdf_repeat})\n")  # fmt: skip
    speed(samples, args.repeat, args.pystdf_repeat)
    largest = max(
        (p for p in samples if not p.name.endswith(".gz")), key=lambda p: p.stat().st_size
    )
    large_file_speed(largest, args.large_copies, args.repeat)
    memory(largest, [int(c) for c in args.memory_copies.split(",")])


if __name__ == "__main__":
    main()
