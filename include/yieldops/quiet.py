"""Known third-party noise, silenced at its source so a task log shows what the task did.

Each function silences one library's known noise and nothing else: one logger, or one
warning message from one module. Each is called where we import that library, before the
noise would start.
"""

from __future__ import annotations

import logging
import warnings


def quiet_skops() -> None:
    """Functions without ``__module__`` (numpy and scipy ufuncs in a fitted model) make skops
    try ``getattr(module, name)`` on every loaded module. In an Airflow task process that reads
    each deprecated Airflow attribute once: 1,160 ``DeprecatedImportWarning`` lines per task
    that saves or loads a model. Ignore exactly those: Airflow's deprecation messages (in
    their several wordings), raised from skops' lookup."""
    warnings.filterwarnings(
        "ignore",
        message=r".*\bairflow\..*\bdeprecated\b",
        category=FutureWarning,  # DeprecatedImportWarning's base (no Airflow import here)
        module=r"skops\.io\._utils",
    )


def quiet_great_expectations() -> None:
    """Great Expectations logs at INFO while it is imported (~200 "Skipping registering
    function ..." lines) and for routine steps (loading datasources), which task logs show.
    Keep its logs to warnings, unless someone configured its logger; call it before the
    first ``import great_expectations``."""
    logger = logging.getLogger("great_expectations")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
