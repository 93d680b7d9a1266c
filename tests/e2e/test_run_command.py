"""`yieldops run FILES`: the three DAGs in one process (dag.test), no servers but a local
gateway; a bad file is named with its reason and does not stop the good ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from yieldops.synth import synthesize

MODEL = "yield-YO-7NM-ADC"


def test_files_to_a_champion_in_one_process(tmp_path):
    import mlflow

    lots = synthesize(tmp_path / "stdf", lots=3, wafers_per_lot=1, seed=4, drift=0.3)
    truncated = tmp_path / "stdf" / "cut_short.stdf"
    truncated.write_bytes(lots[0].read_bytes()[:5000])
    home = tmp_path / "home"
    yieldops = Path(sys.executable).with_name("yieldops")

    done = subprocess.run(
        [yieldops, "run", *lots, truncated, "--home", home],
        capture_output=True,
        text=True,
        timeout=900,
    )

    out = done.stdout
    assert done.returncode == 1, out + done.stderr[-3000:]  # one file was quarantined
    assert "quarantined cut_short.stdf: decode: file ends inside a record" in out
    assert "yield_training YO-7NM-ADC: success (registered)" in out
    assert "model_rollout YO-7NM-ADC: success" in out
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == 1
