"""Ingest throughput of the production stack with one Celery worker and with two, in one run.

One stack (tests/stack/production.py: CeleryExecutor, PostgreSQL, Redis, S3 events through
SQS on moto) with two workers; yield_training and model_rollout are paused, so only ingest
runs. The first batch lands while worker-2 is stopped, the second (other lots, same size)
with both workers. Files per minute are counted from the landing (which includes the SQS
trigger's polling, up to a minute) and from the first claim (the workers' throughput).

    python benchmarks/bench_stack.py --files 20     # from a checkout: the harness is a test file
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the stack harness lives beside its tests, in the checkout

from tests.stack.production import (  # noqa: E402
    EVENTS_ONLY,
    BatchResult,
    ProductionStack,
    ingest_batch,
    set_paused,
    synthetic_files,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20, help="files per batch")
    parser.add_argument("--concurrency", type=int, default=2, help="tasks per worker")
    parser.add_argument("--home", type=Path, default=ROOT / "var" / "bench-stack")
    args = parser.parse_args()

    stack = ProductionStack(
        args.home.resolve(),
        workers=2,
        worker_concurrency=args.concurrency,
        overrides=dict(EVENTS_ONLY),
    )
    try:
        stack.start()
        set_paused(stack, ["yield_training", "model_rollout"], True)
        stack.worker("worker-2").stop()
        one = _batch(stack, args.files, first_lot=0)
        stack.restart_worker("worker-2")
        two = _batch(stack, args.files, first_lot=args.files)
    finally:
        stack.stop()  # its logs stay under --home
    _report({1: one, 2: two}, args.concurrency)


def _batch(stack: ProductionStack, files: int, first_lot: int) -> BatchResult:
    _, result = ingest_batch(stack, synthetic_files(stack, files, first_lot=first_lot))
    print(f"  {result.describe()}")
    return result


def _report(results: dict[int, BatchResult], concurrency: int) -> None:
    print("\nworkers x tasks  files  landing->done  files/min  first claim->done  files/min")
    for workers, r in results.items():
        from_landing = (r.last_finished_at - r.landed_at).total_seconds()
        from_claim = (r.last_finished_at - r.first_claimed_at).total_seconds()
        print(
            f"{workers} x {concurrency:<11} {r.files:>5}  {from_landing:>11.0f} s  "
            f"{r.files_per_minute:>9.1f}  {from_claim:>15.0f} s  "
            f"{r.processing_files_per_minute:>9.1f}"
        )


if __name__ == "__main__":
    main()
