"""Every name built from a product, and read back: the registered model, the MLflow
experiment, the assets that chain the DAGs. The only place these spellings live.

>>> model_name("YO-7NM-ADC")
'yield-YO-7NM-ADC'
>>> product_of_model("yield-YO-7NM-ADC")
'YO-7NM-ADC'
>>> product_of_curated_asset(curated_asset_name("YO-7NM-ADC"))
'YO-7NM-ADC'
>>> model_of_challenger_asset(challenger_asset_name("yield-YO-7NM-ADC"))
'yield-YO-7NM-ADC'
"""

from __future__ import annotations

MODEL_PREFIX = "yield-"
CURATED_ASSET_PREFIX = "curated/"
CHALLENGER_ASSET = "model/{model}/challenger"


def model_name(product: str) -> str:
    """The registered MLflow model of a product."""
    return f"{MODEL_PREFIX}{product}"


def product_of_model(model: str) -> str:
    """The product a registered model belongs to; ValueError for a name not ours."""
    if not model.startswith(MODEL_PREFIX):
        raise ValueError(f"model {model!r} is not a yieldops model ({MODEL_PREFIX}<product>)")
    return model.removeprefix(MODEL_PREFIX)


def experiment_name(product: str) -> str:
    """The MLflow experiment of a product's training runs."""
    return f"yield/{product}"


def curated_asset_name(product: str) -> str:
    """The asset ``stdf_ingest`` updates when a product gets curated data."""
    return f"{CURATED_ASSET_PREFIX}{product}"


def product_of_curated_asset(asset_name: str) -> str | None:
    """The product of a ``curated/<product>`` asset; None for any other asset."""
    if not asset_name.startswith(CURATED_ASSET_PREFIX):
        return None
    return asset_name.removeprefix(CURATED_ASSET_PREFIX)


def challenger_asset_name(model: str) -> str:
    """The asset ``yield_training`` updates when it registers a challenger of ``model``."""
    return CHALLENGER_ASSET.format(model=model)


def model_of_challenger_asset(asset_name: str) -> str | None:
    """The model of a ``model/<model>/challenger`` asset; None for any other asset."""
    head, _, tail = CHALLENGER_ASSET.partition("{model}")
    if not (asset_name.startswith(head) and asset_name.endswith(tail)):
        return None
    return asset_name[len(head) : len(asset_name) - len(tail)] or None
