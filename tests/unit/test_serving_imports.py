"""What importing a piece of ``yieldops.serving`` loads, seen in a fresh interpreter: the
triggerer reads the prediction log inside its event loop, and Airflow tasks steer gateways
through the client; neither may load the web app or the models (seconds, ~1,900 modules)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

APP_AND_MODELS = ("fastapi", "uvicorn", "starlette", "sklearn", "mlflow")


def loaded_packages(module: str) -> set[str]:
    """Top-level packages loaded by ``import module`` in a new interpreter."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


@pytest.mark.parametrize(
    "module",
    ["yieldops.serving.predlog", "yieldops.serving.client", "yieldops.serving.settings"],
)
def test_light_parts_load_neither_the_app_nor_the_models(module):
    heavy = loaded_packages(module) & set(APP_AND_MODELS)
    assert not heavy, f"import {module} loads {sorted(heavy)}"


def test_the_client_needs_httpx_alone():
    loaded = loaded_packages("yieldops.serving.client")
    assert "httpx" in loaded
    assert not loaded & {"pandas", "numpy", "sqlalchemy", "airflow"}
