"""Where the Airflow files (dags/, plugins/) and the product and target YAML (config/) are.

In a checkout the package is include/yieldops, beside dags/, plugins/ and include/config/.
An installed wheel carries copies of them as data files under ``<prefix>/share/yieldops``
(see pyproject.toml), so Airflow can load the DAGs with no checkout: ``yieldops paths``
prints the folders to give Airflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED_ROOT = Path(sys.prefix) / "share" / "yieldops"


def checkout_root() -> Path | None:
    """The checkout this package runs from (an editable install); None when installed."""
    root = _PACKAGE_DIR.parents[1]
    in_checkout = _PACKAGE_DIR.parent.name == "include" and (root / "dags").is_dir()
    return root if in_checkout else None


def dags_folder() -> Path:
    root = checkout_root()
    return root / "dags" if root else INSTALLED_ROOT / "dags"


def plugins_folder() -> Path:
    root = checkout_root()
    return root / "plugins" if root else INSTALLED_ROOT / "plugins"


def default_config_dir() -> Path:
    root = checkout_root()
    return root / "include" / "config" if root else INSTALLED_ROOT / "config"
