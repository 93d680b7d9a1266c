"""Ingest throughput: files per minute through stdf_ingest, beside the bare library loop.

Writes N synthetic lot files (one wafer, about 1,185 dies and 1.2 MB each) to a
fresh landing zone, then ingests them twice in separate homes:

- library: ``claim_files`` + ``ingest_file`` in one process, one file after the
  other (decode, Great Expectations validation with Data Docs, curated Parquet);
- airflow: ``dag.test()`` of the ``stdf_ingest`` DAG (a mapped task per file,
  run in-process one after the other, with Airflow's per-task overhead).

    python benchmarks/bench_ingest.py --files 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _environment(home: Path, landing: Path, airflow_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "YIELDOPS_HOME": str(home),
        "YIELDOPS_LANDING_URL": str(landing),
        "YIELDOPS_INGEST_TRIGGER": "sweep",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT / "plugins"),
    }


def library_worker() -> None:
    from yieldops.ingest import ingest_file
    from yieldops.landing.claims import claim_files
    from yieldops.landing.factory import landing_zone
    from yieldops.landing.ledger import Ledger
    from yieldops.settings import load_settings

    settings = load_settings()
    zone, ledger = landing_zone(settings.landing_url), Ledger(settings.ledger_url)
    start = time.perf_counter()
    claimed = claim_files(zone, ledger, "bench").claimed
    outcomes = [
        ingest_file(
            f, zone, ledger, "bench", curated_dir=settings.curated_dir, docs_dir=settings.docs_dir
        )
        for f in claimed
    ]
    seconds = time.perf_counter() - start
    assert all(o.status == "curated" for o in outcomes), [o.reason for o in outcomes]
    print(f"RESULT {len(outcomes)} {seconds}")


def airflow_worker() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=ROOT / "dags" / "stdf_ingest.py").dags["stdf_ingest"]
    start = time.perf_counter()
    run = dag.test()
    seconds = time.perf_counter() - start
    assert run.state == "success", run.state
    curated = len(list(Path(os.environ["YIELDOPS_HOME"], "curated").glob("**/parts.parquet")))
    print(f"RESULT {curated} {seconds}")


def _measure(mode: str, landing: Path, work: Path) -> tuple[int, float]:
    env = _environment(work / mode, landing, work / f"airflow-{mode}")
    if mode == "airflow":
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            check=True,
            capture_output=True,
        )
    done = subprocess.run(
        [sys.executable, __file__, f"--{mode}-worker"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{mode} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    files, seconds = lines[-1].split()[1:]
    return int(files), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--library-worker", action="store_true")
    parser.add_argument("--airflow-worker", action="store_true")
    args = parser.parse_args()
    if args.library_worker:
        return library_worker()
    if args.airflow_worker:
        return airflow_worker()

    from yieldops.synth import synthesize

    work = Path(tempfile.mkdtemp(prefix="yieldops-bench-ingest-"))
    try:
        # No drift: every lot stays within the plausible yield range and is curated.
        paths = synthesize(work / "landing", lots=args.files, wafers_per_lot=1, seed=5, drift=0.0)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{len(paths)} STDF files, {megabytes:.1f} MB, one wafer (1,185 dies) each\n")
        print(f"{'path':10} {'files':>6} {'seconds':>8} {'files/min':>10} {'MB/min':>8}")
        for mode in ("library", "airflow"):
            files, seconds = _measure(mode, work / "landing", work)
            rate = files / seconds * 60
            print(
                f"{mode:10} {files:6d} {seconds:8.1f} {rate:10.1f} {megabytes / seconds * 60:8.1f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
