"""The yieldops command, run in-process as a user would run it."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from yieldops.cli import EXIT_BAD_INPUT, EXIT_OK, main


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    out = tmp_path_factory.mktemp("landing")
    args = ["synth", "--lots", "2", "--wafers", "1", "--out", str(out), "--compress", "gz"]
    assert main(args) == EXIT_OK
    return out


def test_synth_writes_one_file_per_lot(landing):
    assert sorted(p.name for p in landing.iterdir()) == [
        "YO-7NM-ADC_S0-L001.stdf.gz",
        "YO-7NM-ADC_S0-L002.stdf.gz",
    ]


def test_info_reports_parts_yield_and_records(landing, capsys):
    files = sorted(landing.iterdir())
    assert main(["stdf", "info", "--json", *map(str, files)]) == EXIT_OK
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["lot_id"] for s in summaries] == ["S0-L001", "S0-L002"]
    for s in summaries:
        assert s["parts"] == s["records"]["PRR"] > 1000
        assert 0.5 < s["yield"] < 1.0
        assert s["product"] == "YO-7NM-ADC"


def test_info_counts_a_retested_die_once(tmp_path, capsys):
    import json

    from yieldops.synth import synthesize

    (path,) = synthesize(tmp_path, lots=1, wafers_per_lot=1, seed=0, tester_style="inhouse")
    assert main(["stdf", "info", "--json", str(path)]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["parts"] > summary["dies"]  # failing dies probed again at the wafer's end
    assert summary["good_parts"] <= summary["dies"]
    assert summary["yield"] == round(summary["good_parts"] / summary["dies"], 4)


def test_convert_writes_parquet_tables(landing, tmp_path, capsys):
    files = sorted(landing.iterdir())
    assert main(["stdf", "convert", str(files[0]), "--out", str(tmp_path)]) == EXIT_OK
    lot_dir = tmp_path / "YO-7NM-ADC_S0-L001"
    names = sorted(p.name for p in lot_dir.iterdir())
    tables = ("bins", "lots", "parts", "results", "tests", "wafers")
    assert names == [f"{t}.parquet" for t in tables]
    parts = pq.read_table(lot_dir / "parts.parquet")
    assert parts.num_rows > 1000 and set(parts.column("lot_id").to_pylist()) == {"S0-L001"}


def test_bad_file_is_named_and_does_not_stop_the_batch(landing, tmp_path, capsys):
    bad = tmp_path / "broken.stdf"
    bad.write_bytes(b"\x02\x00\x00\x0a\x02\x04" + b"\x10\x00\x0f\x0a\x01")  # PTR cut short
    good = sorted(landing.iterdir())[0]
    status = main(["stdf", "convert", str(bad), str(good), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == EXIT_BAD_INPUT
    assert "broken.stdf" in err and "byte 6" in err and "ends inside a record" in err
    assert (tmp_path / "out" / "YO-7NM-ADC_S0-L001" / "parts.parquet").exists()
    assert not (tmp_path / "out" / "broken").exists()


def test_missing_file_is_reported(tmp_path, capsys):
    assert main(["stdf", "info", str(tmp_path / "nope.stdf")]) == EXIT_BAD_INPUT
    assert "nope.stdf" in capsys.readouterr().err


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["stdf", "frobnicate"])
    assert caught.value.code == 2


def test_traffic_replay_reports_failures_against_a_closed_port(landing, tmp_path, capsys):
    import hashlib
    import socket

    from yieldops.curated.dataset import write_file_tables
    from yieldops.stdf import read_tables

    for path in sorted(landing.iterdir()):
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, tmp_path / "curated", "YO-7NM-ADC", lot_id, sha)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        "traffic",
        "replay",
        "--gateway",
        f"http://127.0.0.1:{port}",
        "--product",
        "YO-7NM-ADC",
        "--curated",
        str(tmp_path / "curated"),
        "--rate",
        "200",
        "--limit",
        "5",
    ]
    assert main(args) == EXIT_BAD_INPUT
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["sent"], report["ok"], report["failed"]) == (5, 0, 5)


def test_rollout_audit_lists_a_models_records_oldest_first(tmp_path, capsys):
    from yieldops.rollout.audit import AuditLog, RolloutRef

    url = f"sqlite:///{tmp_path / 'rollout.db'}"
    audit = AuditLog(url)
    ref = RolloutRef("yield-P", 2, 1, "model_rollout", "run-1", "manual run")
    audit.record(ref, "routing", "routing shadow: champion v1, challenger v2", target="fab-a")
    audit.record(
        ref, "verdict", "pass (pass: latency)", target="fab-a", step="shadow", verdict="pass"
    )
    audit.record(RolloutRef("yield-Q", 5, 4), "promoted", "v5 is champion")
    audit.close()

    assert main(["rollout", "audit", "--db", url, "--model", "yield-P"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "fab-a  routing  routing shadow" in lines[0]
    assert "fab-a/shadow  verdict [pass]  pass (pass: latency)" in lines[1]
    assert main(["rollout", "audit", "--db", url, "--json", "--last", "1"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["summary"] == "v5 is champion"


def _audit_log_at(home) -> None:
    from yieldops.rollout.audit import AuditLog, RolloutRef

    audit = AuditLog(f"sqlite:///{home / 'rollout.db'}")
    audit.record(RolloutRef("yield-P", 1, None), "promoted", "v1 is champion")
    audit.close()


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A folder to run in, with no YIELDOPS_* in the environment and a home of its own."""
    for name in ("YIELDOPS_HOME", "YIELDOPS_ROLLOUT_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_rollout_audit_finds_a_run_home_in_this_folder(elsewhere, capsys):
    (elsewhere / "var" / "run").mkdir(parents=True)
    _audit_log_at(elsewhere / "var" / "run")

    assert main(["rollout", "audit"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "yield-P v1  -  promoted  v1 is champion" in captured.out
    assert (
        f"rollout audit log: sqlite:///{elsewhere / 'var' / 'run' / 'rollout.db'}" in captured.err
    )


def test_rollout_audit_without_a_log_says_where_it_looked_and_creates_nothing(elsewhere, capsys):
    home = elsewhere / "no-demo-here"
    home.mkdir()

    assert main(["rollout", "audit", "--home", str(home)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"looked for {home / 'rollout.db'}" in err and "--home DIR" in err
    assert list(home.iterdir()) == []
    assert not (elsewhere / "user" / "yieldops-data").exists()


def test_make_demo_passes_demo_args_on():
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("no make on the PATH")
    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run(
        ["make", "-n", "demo", "DEMO_ARGS=--keep-running --seed 3"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "yieldops demo --home var/demo --keep-running --seed 3" in shown.splitlines()[-1]


def test_ledger_lists_files_and_what_they_wait_for(tmp_path, capsys):
    from datetime import datetime, timezone

    from yieldops.landing.ledger import CURATED, Ledger

    assert main(["ledger", "--home", str(tmp_path)]) == EXIT_BAD_INPUT
    assert not (tmp_path / "ledger.db").exists()  # reading never creates a ledger
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    for sha, key in (("a" * 64, "t/done.stdf"), ("b" * 64, "t/growing.stdf")):
        ledger.claim(sha, source_key=key, zone_url="file:///l", size=1, run_id="r")
    ledger.finish("a" * 64, "r", CURATED, output="/curated/a")
    now = datetime.now(timezone.utc)
    ledger.wait("b" * 64, "r", reason="no MRR at the end: waits", recheck_at=now, modified_at=now)
    ledger.close()
    capsys.readouterr()

    assert main(["ledger", "--home", str(tmp_path)]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == [
        "curated      t/done.stdf  /curated/a",
        "waiting      t/growing.stdf  no MRR at the end: waits",
    ]
    assert main(["ledger", "--home", str(tmp_path), "--status", "waiting"]) == EXIT_OK
    assert capsys.readouterr().out == "waiting      t/growing.stdf  no MRR at the end: waits\n"
