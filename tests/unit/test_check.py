"""yieldops check: the project passes; broken DAG files and YAML fail naming file and line."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from tests.conftest import ROOT

from yieldops.checks.config_files import check_config
from yieldops.checks.suites import check_suites
from yieldops.curated.dataset import write_file_tables
from yieldops.ingest import with_product
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, synthesize

FIXTURES = ROOT / "tests" / "fixtures" / "check"
YIELDOPS = Path(sys.executable).parent / "yieldops"
SYNTAX_ERROR_DAG = '"""An Airflow DAG file that is not Python."""\n\n\ndef broken(:\n    pass\n'


def start_check(*args: str, curated: Path) -> subprocess.Popen:
    """The installed command, as a data engineer runs it from the checkout."""
    return subprocess.Popen(
        [str(YIELDOPS), "check", *args],
        cwd=ROOT,
        env={**os.environ, "YIELDOPS_CURATED_DIR": str(curated)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of ``path`` containing ``text``."""
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def report_line(output: str, status: str, where: str) -> str:
    """The report line with this status at this place (``file`` or ``file:line``)."""
    pattern = rf"^{status} +[A-Za-z ]+? +{re.escape(where)} +.*$"
    found = re.findall(pattern, output, flags=re.MULTILINE)
    assert found, f"no {status} line for {where} in:\n{output}"
    return "\n".join(found)


@pytest.fixture(scope="module")
def broken_dags(tmp_path_factory):
    """The fixture DAG files, and one with a syntax error (not kept as .py: ruff parses those)."""
    dags = tmp_path_factory.mktemp("dags")
    shutil.copytree(FIXTURES / "dags", dags, dirs_exist_ok=True)
    (dags / "syntax_error.py").write_text(SYNTAX_ERROR_DAG)
    return dags


@pytest.fixture(scope="module")
def runs(broken_dags, tmp_path_factory):
    """The project's check and the fixtures' side by side: most of each is importing.
    Nothing is curated: the suites run on synthetic lots."""
    curated = tmp_path_factory.mktemp("nothing-curated")
    started = {
        "project": start_check(curated=curated),
        "broken": start_check(
            "--dags", str(broken_dags), "--config", str(FIXTURES / "config"), curated=curated
        ),
    }
    return {name: finish(process) for name, process in started.items()}


@pytest.fixture(scope="module")
def project(runs):
    return runs["project"]


@pytest.fixture(scope="module")
def broken(runs):
    return runs["broken"]


def test_project_passes_every_check(project):
    assert project.returncode == 0, project.stdout + project.stderr
    lines = project.stdout.strip().splitlines()
    assert all(line.startswith("OK ") for line in lines[:-1]), project.stdout
    for dag_file in sorted((ROOT / "dags").glob("*.py")):
        assert re.search(rf"{dag_file.stem} \(\d+\.\d\d s\)", project.stdout), dag_file.name
    for product in ("YO-7NM-ADC", "YO-28NM-PMIC"):
        assert re.search(rf"suite .*{product}: \d+ expectations", project.stdout), product
    assert re.fullmatch(r"(\d+) checks: \1 OK", lines[-1])


def test_broken_input_exits_1_with_a_report_not_a_traceback(broken):
    assert broken.returncode == 1
    assert "Traceback" not in broken.stdout + broken.stderr
    assert re.fullmatch(r"14 checks: 2 OK, 10 FAIL, 2 SKIP", broken.stdout.strip().splitlines()[-1])


def test_dag_import_errors_name_the_dag_file_and_line(broken, broken_dags):
    name_error = broken_dags / "name_error.py"
    line = report_line(broken.stdout, "FAIL", f"{name_error}:{line_of(name_error, 'helper()')}")
    assert "NameError: name 'undefined_helper' is not defined" in line
    syntax_error = broken_dags / "syntax_error.py"
    line = report_line(broken.stdout, "FAIL", f"{syntax_error}:{line_of(syntax_error, 'def ')}")
    assert "SyntaxError" in line
    library_error = broken_dags / "library_error.py"
    line = report_line(broken.stdout, "FAIL", f"{library_error}:{line_of(library_error, 'load(')}")
    assert line.endswith("yaml.parser.ParserError: while parsing a flow sequence")


def test_a_dag_breaking_the_house_rules_is_named_with_each_rule(broken, broken_dags):
    no_doc = broken_dags / "no_doc.py"
    assert "no_doc (" in report_line(broken.stdout, "OK", str(no_doc))
    rules = report_line(broken.stdout, "FAIL", str(no_doc))
    assert "no_doc: doc_md missing or under 200 characters" in rules
    assert "no_doc: param 'lot' has no description" in rules
    assert len(rules.splitlines()) == 2  # it has tags, an owner and retries


def test_product_yaml_problems_name_file_and_line(broken):
    products = FIXTURES / "config" / "products"
    wrong_type = products / "wrong_type.yaml"
    where = f"{wrong_type.relative_to(ROOT)}:{line_of(wrong_type, 'radius_dies')}"
    assert "wafer.radius_dies: Input should be a valid number" in report_line(
        broken.stdout, "FAIL", where
    )
    syntax_error = products / "syntax_error.yaml"
    where = f"{syntax_error.relative_to(ROOT)}:{line_of(syntax_error, ' declared')}"
    assert "YAML syntax:" in report_line(broken.stdout, "FAIL", where)


def test_targets_yaml_problems_name_file_and_line(broken):
    targets = FIXTURES / "config" / "targets.yaml"
    where = targets.relative_to(ROOT)
    name = report_line(broken.stdout, "FAIL", f"{where}:{line_of(targets, 'Fab_B')}")
    assert "targets.1.name:" in name and "lower-case" in name
    lots = report_line(broken.stdout, "FAIL", f"{where}:{line_of(targets, 'recent_lots')}")
    assert "targets.1.recent_lots: Input should be greater than or equal to 1" in lots


def test_suite_runs_on_a_synthetic_lot_for_each_product_that_loads(broken):
    products = (FIXTURES / "config" / "products").relative_to(ROOT)
    implausible = report_line(broken.stdout, "FAIL", f"{products}/YO-7NM-ADC.yaml")
    assert "expectations failed on a synthetic lot" in implausible
    assert "parts.good: expect_column_mean_to_be_between" in implausible
    for name in ("wrong_type", "syntax_error"):
        assert "does not load" in report_line(broken.stdout, "SKIP", f"{products}/{name}.yaml")


def test_a_product_defined_twice_is_named_at_the_second_files_name(tmp_path):
    (tmp_path / "products").mkdir()
    for copy in ("a.yaml", "b.yaml"):
        shutil.copy(
            ROOT / "include" / "config" / "products" / "YO-7NM-ADC.yaml",
            tmp_path / "products" / copy,
        )
    twice = [r for r in check_config(tmp_path) if r.failed]
    second = tmp_path / "products" / "b.yaml"
    assert [(r.where, r.detail.split(" (")[0]) for r in twice] == [
        (f"{second}:{line_of(second, 'name:')}", "product 'YO-7NM-ADC' is defined twice")
    ]


def test_yaml_the_loader_cannot_take_is_a_failure_not_a_crash(tmp_path):
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "list.yaml").write_text("- name: X\n")
    (tmp_path / "targets.yaml").write_text("targets:\n  - name: a\n")
    failed = [(r.where, r.detail) for r in check_config(tmp_path) if r.failed]
    assert failed == [
        (f"{tmp_path / 'products' / 'list.yaml'}:1", "the top level is a list, not a mapping"),
        (f"{tmp_path / 'targets.yaml'}:2", "targets.0.product: Field required"),
        (f"{tmp_path / 'targets.yaml'}:2", "targets.0.conn_id: Field required"),
    ]


def curate_synthetic_lots(root: Path, product: str, lots: int, bad_lot: int) -> list[str]:
    """Lots of the product curated as ingest curates them, lot ``bad_lot`` with a die in a
    bin the product does not declare; their lot ids, oldest first."""
    ids = []
    for index, path in enumerate(
        synthesize(root / "landing", lots=lots, wafers_per_lot=1, product=PRODUCTS[product])
    ):
        tables = with_product(read_tables(path), product)
        if index == bad_lot:
            parts = tables["parts"]
            bins = parts["hard_bin"].to_numpy().copy()
            bins[0] = 99
            column = parts.schema.get_field_index("hard_bin")
            tables["parts"] = parts.set_column(column, "hard_bin", pa.array(bins, pa.uint16()))
        lot_id = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, root / "curated", product, lot_id, sha)
        ids.append(lot_id)
    return ids


@pytest.mark.parametrize("bad_lot", [1, 0], ids=["newest-bad", "older-bad"])
def test_suites_run_on_the_newest_curated_lot_and_say_so(tmp_path, bad_lot):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "include" / "config" / "products", config / "products")
    lots = curate_synthetic_lots(tmp_path, "YO-7NM-ADC", lots=2, bad_lot=bad_lot)
    results = {Path(r.where).stem: r for r in check_suites(config, tmp_path / "curated")}
    adc, pmic = results["YO-7NM-ADC"], results["YO-28NM-PMIC"]
    on_newest = rf"on curated lot {re.escape(repr(lots[-1]))}, file [0-9a-f]{{12}} \(\d+ dies\)"
    if bad_lot == len(lots) - 1:  # the newest lot is the one checked: its undeclared bin fails
        assert adc.failed
        assert re.search(rf"YO-7NM-ADC: 1 of \d+ expectations failed {on_newest}", adc.detail)
        assert "parts.hard_bin: expect_column_values_to_be_in_set" in adc.detail
    else:  # the older, broken lot is not
        assert adc.status == "OK"
        assert re.search(rf"YO-7NM-ADC: \d+ expectations {on_newest}$", adc.detail)
    # Nothing curated of the other product: its synthetic twin, and the line says so.
    assert pmic.status == "OK"
    assert re.search(
        r"YO-28NM-PMIC: \d+ expectations on a synthetic lot \(\d+ dies\)$", pmic.detail
    )
