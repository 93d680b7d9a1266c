"""The cost of one model call: the scikit-learn pipeline's ``predict_proba`` beside its ONNX
serving form's ``InferenceSession.run``, for a batch of 1 die and of 50, side by side.

Real model: the YO-28NM-PMIC pipeline of the product YAML, trained on two synthetic lots
(``yieldops.synth``) curated to Parquet; the third lot's dies are scored. Three views:

- ``raw``: the bare calls on a prepared matrix (float64 DataFrame for the pipeline,
  float32 array for ONNX Runtime);
- ``gateway``: ``LoadedModel.predict_good`` from the JSON records, as the gateway scores
  (records -> feature matrix -> P(good)), sklearn form vs ONNX form;
- ``threads``: ``--threads`` callers at once (the gateway's request threads), batch 1,
  dies per second of each form.

The forms alternate round by round, so drifting machine noise hits both alike.

    python benchmarks/bench_serving_form.py                 # about 45 s
    python benchmarks/bench_serving_form.py --calls 500 --rounds 6 --threads 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import PRODUCT, curated_fab

BATCHES = (1, 50)


def trained_model(work: Path) -> tuple[Any, pd.DataFrame, list[str]]:
    """The product's pipeline on lots 1-2, the dies of lot 3 and the feature columns."""
    from yieldops.config import product
    from yieldops.training import train

    config = product(PRODUCT)
    table = curated_fab(work)
    frame, columns = table.frame, table.feature_columns
    newest = frame["lot_id"] == table.lots[-1]
    model = train(frame[~newest], columns, config.model)
    return model, frame[newest].reset_index(drop=True), columns


def per_call_ms(call: Callable[[int, int], Any], calls: int, batch: int) -> list[float]:
    """Milliseconds of each of ``calls`` calls ``call(i, batch)`` (call ``i`` scores the
    ``i``-th batch of dies)."""
    times = []
    for i in range(calls):
        started = time.perf_counter()
        call(i, batch)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def threaded_dies_per_second(predict: Callable[[list], Any], dies: list, threads: int) -> float:
    """Dies per second of ``threads`` callers scoring one die per call, every die once."""
    from yieldops.serving.models import OpenMPThreads

    cap = OpenMPThreads(1)  # as the gateway: one OpenMP thread per calling thread

    def one(die: dict) -> None:
        cap.apply()
        predict([die])

    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(one, dies))
        return len(dies) / (time.perf_counter() - started)


def line(view: str, batch: int | str, times: dict[str, list[float]]) -> str:
    cells = [
        f"{statistics.median(t):8.3f} ms (p95 {np.percentile(t, 95):7.3f})"
        for t in (times["sklearn"], times["onnx"])
    ]
    speedup = statistics.median(times["sklearn"]) / statistics.median(times["onnx"])
    return f"{view:<8} {batch!s:>5}  {cells[0]}  {cells[1]}  {speedup:5.1f}x"


def main() -> None:
    from threadpoolctl import threadpool_limits

    from yieldops.features import feature_matrix
    from yieldops.serving.models import LoadedModel, ModelForms
    from yieldops.training.serving_form import (
        ONNX_INPUT,
        ONNX_PROBABILITIES,
        check_serving_form,
        onnx_session,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="per form, batch and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=40, help="callers at once; 0: skip")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="yieldops-bench-onnx-") as folder:
        model, dies, columns = trained_model(Path(folder))
    matrix = feature_matrix(dies, columns)
    form = check_serving_form(model, matrix, tolerance=1.0)
    assert form.onnx is not None, form.reason
    session = onnx_session(form.onnx, threads=1)
    as_float32 = matrix.to_numpy(np.float32)
    records = [
        {k: v for k, v in r.items() if pd.notna(v)} for r in dies[columns].to_dict("records")
    ]
    loaded = {
        "sklearn": LoadedModel.load(lambda v: model, 1),
        "onnx": LoadedModel.load(lambda v: ModelForms(model, form.onnx), 1),
    }
    print(
        f"{PRODUCT}: {len(dies)} dies, {len(columns)} features, "
        f"{model.named_steps['classify'].n_iter_} trees; ONNX vs pipeline P(good) max abs "
        f"difference {form.max_abs_diff:.2g}; {args.calls} calls x {args.rounds} rounds"
    )

    def rows(i: int, batch: int) -> slice:
        start = (i * batch) % (len(dies) - batch)
        return slice(start, start + batch)

    raw: dict[str, Callable[[int, int], Any]] = {
        "sklearn": lambda i, b: model.predict_proba(matrix.iloc[rows(i, b)]),
        "onnx": lambda i, b: session.run(
            [ONNX_PROBABILITIES], {ONNX_INPUT: as_float32[rows(i, b)]}
        ),
    }
    gateway: dict[str, Callable[[int, int], Any]] = {
        name: (lambda i, b, m=m: m.predict_good(records[rows(i, b)])) for name, m in loaded.items()
    }
    print(f"{'view':<8} {'batch':>5}  {'sklearn predict_proba':<31}  {'ONNX Runtime':<31}  speedup")
    with threadpool_limits(limits=1, user_api="openmp"):
        for view, calls in (("raw", raw), ("gateway", gateway)):
            for batch in BATCHES:
                times: dict[str, list[float]] = {"sklearn": [], "onnx": []}
                for _ in range(args.rounds):
                    for name, call in calls.items():
                        call(0, batch)  # warm-up
                        times[name] += per_call_ms(call, args.calls, batch)
                print(line(view, batch, times))
    if args.threads:
        rates = {name: [] for name in loaded}
        for _ in range(args.rounds):
            for name, m in loaded.items():
                rates[name].append(threaded_dies_per_second(m.predict_good, records, args.threads))
        sk, ox = (statistics.median(rates[n]) for n in ("sklearn", "onnx"))
        cells = [f"{rate:11.0f} dies/s".ljust(31) for rate in (sk, ox)]
        print(
            f"{'threads':<8} {args.threads:>5}  {cells[0]}  {cells[1]}  {ox / sk:5.1f}x"
            f"  (batch 1 per call, median of {args.rounds} rounds)"
        )


if __name__ == "__main__":
    main()
