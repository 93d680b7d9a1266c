"""`yieldops run FILES`: the three DAGs in one process (dag.test), no servers but a local
gateway; a bad file is named with its reason and does not stop the good ones. The console
shows one line per step and outcome; Airflow's logs go to the file it names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from yieldops.synth import synthesize

MODEL = "yield-YO-7NM-ADC"
STEP_LINES = ("yieldops run: ", "ingest ", "train ", "rollout ", "full logs: ", "  ")


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
    lines = out.splitlines()
    named = re.search(r"full logs: (\S+\.log)", lines[0])
    assert named, out
    log_path = Path(named.group(1))
    assert lines[-1].startswith(f"full logs: {log_path};")
    assert all(line.startswith(STEP_LINES) for line in lines), out  # no Airflow log line
    assert "[info" not in done.stderr, done.stderr[-3000:]
    for lot in ("S4-L001", "S4-L002", "S4-L003"):
        assert re.search(
            rf"^ingest YO-7NM-ADC_{lot}\.stdf: curated \d+ dies of lot {lot}$", out, re.M
        )
    assert "ingest cut_short.stdf: quarantined (incomplete: file ends inside a record" in out
    registered = rf"^train YO-7NM-ADC: registered {MODEL} v1 \(\w+ [\d.]+ vs no skill [\d.]+"
    assert re.search(registered, out, re.M)  # each gated metric beside its baseline
    assert f"\nrollout {MODEL} v1: champion\n" in out

    log = log_path.read_text()
    assert "[DAG TEST] end task task_id=promote" in log  # every task's log is there
    assert "DagRun Finished: dag_id=model_rollout" in log
    assert f">>> rollout {MODEL} v1: champion" in log  # the step lines mark the way
    assert "Skipping registering function" not in log  # Great Expectations' import chatter
    assert "DeprecatedImportWarning" not in log  # skops' scan of Airflow's modules
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == 1
