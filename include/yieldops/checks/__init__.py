"""``yieldops check``: what data engineers edit, checked before they push.

- product and target YAML against their schemas, each problem at its file and line;
- the DAG files imported the way Airflow imports them, and the house rules of every DAG;
- each product's expectation suites on its newest curated lot, else on a small synthetic lot.

Each check reports a :class:`Result`; bad input is a FAIL, never an exception, and the
other checks still run.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..settings import load_settings
from .config_files import PRODUCT, check_config
from .dags import DAG_FILE, check_dags, dag_problems
from .results import FAIL, OK, SKIP, Result, format_report, guarded
from .suites import SUITE, check_suites

__all__ = [
    "FAIL",
    "OK",
    "SKIP",
    "Result",
    "dag_problems",
    "format_report",
    "run_checks",
]


def run_checks(dags_dir: Path, config_dir: Path, curated_dir: Path | None = None) -> list[Result]:
    """Every check's results in report order: configuration, DAG files, suites (on the
    curated data under ``curated_dir``, default: the configured curated dataset)."""
    curated_dir = curated_dir or load_settings().curated_dir
    return [
        *guarded(PRODUCT, config_dir, partial(check_config, config_dir)),
        *guarded(DAG_FILE, dags_dir, partial(check_dags, dags_dir, config_dir)),
        *guarded(SUITE, config_dir, partial(check_suites, config_dir, curated_dir)),
    ]
