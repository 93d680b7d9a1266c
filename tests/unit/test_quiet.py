"""Known third-party noise stays out of task logs; each check runs in a fresh interpreter,
as a task process is (the noise comes once per process, at a library's first import)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _python(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_saving_and_loading_a_model_in_an_airflow_process_warns_nothing(tmp_path):
    done = _python(
        """
        import sys
        from pathlib import Path

        import airflow.models, airflow.sdk  # what a task process has loaded
        import numpy as np
        from sklearn.ensemble import HistGradientBoostingClassifier

        from yieldops.training.model import load_model_file, save_model_file

        dies = np.random.default_rng(0).random((40, 3))
        model = HistGradientBoostingClassifier(max_iter=2).fit(dies, np.arange(40) % 2)
        save_model_file(model, Path(sys.argv[1]))
        print(load_model_file(Path(sys.argv[1])).predict(dies[:5]))
        """,
        str(tmp_path / "model.skops"),
    )
    output = done.stdout + done.stderr  # Airflow logs warnings to stdout
    assert done.returncode == 0, output[-3000:]
    assert "deprecated" not in output.lower(), output[-3000:]


def test_importing_validation_logs_no_great_expectations_chatter_but_keeps_its_warnings():
    done = _python(
        """
        import logging

        logging.basicConfig(level=logging.INFO)  # as a task log: every INFO line shows
        import yieldops.validation

        logging.getLogger("great_expectations.core").warning("a real problem")
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Skipping registering function" not in done.stderr
    assert "Multiple declarations of metric" not in done.stderr
    assert "a real problem" in done.stderr
