"""The offline check before a target takes traffic: the model on that target's recent data.

A model trained on one fab's lots may not fit another fab's testers and process. Before a
target's gateway sees the challenger, the challenger (and the champion, for the relative
rules) is scored on the newest curated lots tested in the target's facilities and judged
by the product's training gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ProductConfig
from ..curated.dataset import read_table
from ..features import FeatureTable, build_feature_table
from ..training.evaluation import evaluate
from ..training.gate import gate
from ..training.model import feature_columns_of
from .targets import Target


class NoRecentData(ValueError):
    """No curated lot of the target's facilities to check the model on."""


def recent_lots(curated_dir: Path, config: ProductConfig, target: Target) -> FeatureTable:
    """The target's newest ``recent_lots`` curated lots of the product (facility filter)."""
    table = build_feature_table(curated_dir, config)
    lots = read_table(Path(curated_dir), "lots", config.name).to_pandas()
    if target.facilities is not None:
        local = set(lots.loc[lots["facility"].isin(target.facilities), "lot_id"])
        chosen = [lot for lot in table.lots if lot in local]
    else:
        chosen = list(table.lots)
    if not chosen:
        raise NoRecentData(
            f"target {target.name}: no curated {config.name} lot from facilities "
            f"{target.facilities} under {curated_dir}"
        )
    return table.subset(chosen[-target.recent_lots :])


def offline_check(
    curated_dir: Path,
    config: ProductConfig,
    target: Target,
    challenger: Any,
    champion: Any | None,
) -> dict[str, Any]:
    """Gate result (``passed``, ``reasons``, ``checks``) plus ``lots``, ``dies`` and both
    models' metrics on the target's recent lots."""
    data = recent_lots(curated_dir, config, target)
    scored = _metrics(challenger, data)
    baseline = _metrics(champion, data) if champion is not None else None
    result = gate(scored, baseline, config.gate).to_dict()
    return {
        **result,
        "lots": data.lots,
        "dies": data.n_dies,
        "challenger": _headline(scored),
        "champion": _headline(baseline) if baseline else None,
    }


def _metrics(model: Any, data: FeatureTable) -> dict[str, Any]:
    return evaluate(model, data.frame, feature_columns_of(model)).to_dict()["metrics"]


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("accuracy", "roc_auc", "log_loss", "dies")}
