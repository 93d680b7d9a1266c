"""Where the gate's defaults come from: trained models and models without skill, judged by
each product's gate on the synthetic fab, over many seeds (README, "The gate's defaults").

The demo's story per seed: three lots of a steady process, then two drifted lots.
- v1: trained on lots 1-2, judged on lot 3 (no champion);
- v2: trained on lots 1-3, judged on the first drifted lot against v1;
- v3: trained on lots 1-4, judged on the second drifted lot against v1;
- shuffled: labels permuted across the training dies of v2; always_good: a
  DummyClassifier saying "good"; both judged on the first drifted lot.

Prints, per product and case, how many seeds pass, the range of every gated metric and
its no-skill baseline, which checks fail, and v2 minus v1 on the same holdout (the spread
of two models of equal quality, which the tolerances must allow).

    python benchmarks/gate_defaults.py --seeds 20 --wafers 2
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from yieldops.config import ModelSpec, ProductConfig, product
from yieldops.curated.dataset import write_file_tables
from yieldops.features import FeatureTable, build_feature_table, split_by_lot
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, synthesize
from yieldops.training import evaluate, gate, train

STEADY, DRIFTED = 0.3, 0.6
METRICS = ["accuracy", "balanced_accuracy", "roc_auc", "recall_bad_at_precision", "wafer_yield_mae"]
ALWAYS_GOOD = ModelSpec(
    estimator="sklearn.dummy.DummyClassifier", params={"strategy": "constant", "constant": 1}
)


def curated_story(root: Path, config: ProductConfig, seed: int, wafers: int) -> FeatureTable:
    spec = PRODUCTS[config.name]
    paths = synthesize(root / "l", lots=3, wafers_per_lot=wafers, seed=seed, drift=STEADY,
                       product=spec)  # fmt: skip
    paths += synthesize(root / "l", lots=2, wafers_per_lot=wafers, seed=seed, drift=DRIFTED,
                        product=spec, first_lot=3)  # fmt: skip
    for path in paths:
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, root / "c", config.name, lot_id, sha)
    return build_feature_table(root / "c", config)


def scored(model, train_set: FeatureTable, holdout: FeatureTable, config: ProductConfig) -> dict:
    return evaluate(
        model,
        holdout.frame,
        holdout.feature_columns,
        recall_precision=config.gate.recall_precision,
        reference_yield=float(train_set.y().mean()),
    ).metrics


def one_seed(config: ProductConfig, seed: int, wafers: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        table = curated_story(Path(tmp), config, seed, wafers)
    upto4, lot5 = split_by_lot(table, 1)
    upto3, lot4 = split_by_lot(upto4, 1)
    upto2, lot3 = split_by_lot(upto3, 1)
    columns = table.feature_columns
    v1, v2, v3 = (train(t.frame, columns, config.model) for t in (upto2, upto3, upto4))
    shuffled_frame = upto3.frame.assign(
        good=np.random.default_rng(seed).permutation(upto3.frame["good"].to_numpy())
    )
    shuffled = train(shuffled_frame, columns, config.model)
    always_good = train(upto3.frame, columns, ALWAYS_GOOD)
    cases = {
        "v1_first": (scored(v1, upto2, lot3, config), None),
        "v2_vs_v1": (scored(v2, upto3, lot4, config), scored(v1, upto3, lot4, config)),
        "v3_vs_v1": (scored(v3, upto4, lot5, config), scored(v1, upto4, lot5, config)),
        "shuffled": (scored(shuffled, upto3, lot4, config), None),
        "always_good": (scored(always_good, upto3, lot4, config), None),
    }
    rows = []
    for case, (metrics, champion) in cases.items():
        verdict = gate(metrics, champion, config.gate)
        failed = [f"{c['kind']} {c['metric']}" for c in verdict.checks if not c["passed"]]
        row = {"product": config.name, "seed": seed, "case": case, "passed": verdict.passed}
        row |= {m: metrics[m] for m in METRICS}
        row |= {f"no_skill.{m}": metrics[f"no_skill.{m}"] for m in METRICS}
        row |= {f"champion.{m}": champion[m] if champion else None for m in METRICS}
        rows.append(row | {"failed": failed})
    return rows


def report(frame: pd.DataFrame) -> None:
    pd.set_option("display.width", 200)
    frame = frame.assign(accuracy_lift=frame["accuracy"] - frame["no_skill.accuracy"])
    shown = ["accuracy_lift", *METRICS[1:], "no_skill.wafer_yield_mae"]
    for name, rows in frame.groupby("product"):
        print(f"\n== {name}: seeds passing the gate")
        print(rows.groupby("case")["passed"].agg(["sum", "count"]).to_string())
        print("\nranges (min / median / max)")
        print(rows.groupby("case")[shown].agg(["min", "median", "max"]).round(3).T.to_string())
        print("\nfailed checks")
        failed = Counter((case, f) for case, fs in zip(rows["case"], rows["failed"]) for f in fs)
        for (case, check), n in sorted(failed.items()):
            print(f"  {case:<12} {check:<40} {n}")
        v2 = rows[rows["case"] == "v2_vs_v1"]
        spread = pd.DataFrame({m: v2[m] - v2[f"champion.{m}"] for m in METRICS})
        print("\nv2 minus v1 on the same holdout (two models of equal quality)")
        print(spread.describe().round(3).loc[["min", "50%", "max"]].to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--wafers", type=int, default=2, help="wafers per lot")
    parser.add_argument("--products", nargs="+", default=sorted(PRODUCTS))
    args = parser.parse_args()
    rows = [
        row
        for name in args.products
        for seed in range(args.seeds)
        for row in one_seed(product(name), seed, args.wafers)
    ]
    report(pd.DataFrame(rows))


if __name__ == "__main__":
    main()
