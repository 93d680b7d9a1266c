"""Quiet, in-memory Great Expectations contexts: no project on disk, no analytics, no bars."""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)


def ephemeral_context(
    *, results_dir: Path | None = None, docs_sites: dict | None = None
) -> AbstractDataContext:
    """A context holding everything in memory, validation results in ``results_dir`` if given."""
    stores = InMemoryStoreBackendDefaults()
    if results_dir is not None:
        stores.stores[stores.validation_results_store_name]["store_backend"] = {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(results_dir),
        }
    config = DataContextConfig(
        store_backend_defaults=stores,
        data_docs_sites=docs_sites or {},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),  # no tqdm bars in task logs
    )
    return gx.get_context(mode="ephemeral", project_config=config)
