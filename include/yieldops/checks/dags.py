"""DAG files imported the way Airflow's DAG processor imports them, and the house rules
every DAG follows (shared with tests/dags/test_dag_integrity.py).

The DagBag runs in an interpreter of its own, as in the DAG processor: a DAG file that
exits or floods the log cannot take the report with it, and only that interpreter imports
Airflow (in :func:`parse_dag_folder`). All files are parsed there in turn, so the first
one's parse time includes the imports the files share.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..layout import plugins_folder
from .results import FAIL, OK, Result, location

if TYPE_CHECKING:
    from airflow.sdk import DAG

DAG_FILE, DAG_RULES = "DAG file", "DAG rules"
MIN_DOC_CHARS = 200  # a page saying what the DAG does, not a title
PARSE_TIMEOUT_S = 600  # Airflow's own per-file import timeout applies inside
_PARSE = "import sys; from yieldops.checks.dags import write_parsed; write_parsed(*sys.argv[1:])"


def dag_problems(dag: DAG) -> list[str]:
    """What a DAG lacks of the house rules: documented, tagged, owned, retried, params described."""
    problems = []
    if len(dag.doc_md or "") < MIN_DOC_CHARS:
        problems.append(f"doc_md missing or under {MIN_DOC_CHARS} characters")
    if not dag.tags:
        problems.append("no tags")
    if dag.owner in ("", "airflow"):
        problems.append("no owner: set default_args['owner']")
    if dag.default_args.get("retries", 0) < 1:
        problems.append("no retries: set default_args['retries']")
    problems += [
        f"param {name!r} has no description"
        for name, param in dag.params.items()
        if not param.description
    ]
    return problems


def check_dags(dags_dir: Path, config_dir: Path) -> list[Result]:
    """Per DAG file its DAGs and parse time or its import error; per DAG the house rules."""
    if not dags_dir.is_dir():
        return [Result(FAIL, DAG_FILE, location(dags_dir), "no such folder")]
    parsed = _parse_in_subprocess(dags_dir.resolve(), config_dir.resolve())
    if not parsed:
        found = "no .py file mentioning both 'airflow' and 'dag' (Airflow's safe mode)"
        return [Result(FAIL, DAG_FILE, location(dags_dir), found)]
    return [result for file in parsed for result in _file_results(file)]


def _parse_in_subprocess(dags_dir: Path, config_dir: Path) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        # DAG files read product and target YAML at parse time: the ones being checked.
        "YIELDOPS_CONFIG_DIR": str(config_dir),
        # The whole traceback, so that it reaches back to the DAG file's own line.
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH": "1000",
    }
    plugins = plugins_folder()
    if plugins.is_dir():  # Airflow puts its own plugins folder on sys.path; this one is ours
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugins), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="yieldops-check-") as tmp:
        out = Path(tmp) / "parsed.json"
        done = subprocess.run(
            [sys.executable, "-c", _PARSE, str(dags_dir), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=PARSE_TIMEOUT_S,
        )
        if not out.exists():
            raise RuntimeError(
                f"the DAG import process ended ({done.returncode}): {_exception_line(done.stderr)}"
            )
        parsed: list[dict[str, Any]] = json.loads(out.read_text())
        return parsed


def write_parsed(dags_dir: str, out: str) -> None:
    """:func:`parse_dag_folder` as JSON in the file ``out`` (Airflow's logs go to stdout)."""
    Path(out).write_text(json.dumps(parse_dag_folder(Path(dags_dir))))


def parse_dag_folder(dags_dir: Path) -> list[dict[str, Any]]:
    """Each DAG file a DagBag finds in ``dags_dir``: parse seconds, import error, and its DAGs
    with their :func:`dag_problems`."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_dir)
    files = []
    for stat in sorted(bag.dagbag_stats, key=lambda s: s.file):
        path = str(dags_dir / stat.file)
        files.append(
            {
                "file": path,
                "seconds": stat.duration.total_seconds(),
                "error": bag.import_errors.get(path),
                "dags": {d.dag_id: dag_problems(d) for d in bag.dags.values() if d.fileloc == path},
            }
        )
    return files


def _file_results(parsed: dict[str, Any]) -> list[Result]:
    path, error, dags = parsed["file"], parsed["error"], parsed["dags"]
    if error:
        results = [
            Result(FAIL, DAG_FILE, location(path, _line_in(error, path)), _exception_line(error))
        ]
    else:
        ids = ", ".join(dags) or "no DAG"
        results = [Result(OK, DAG_FILE, location(path), f"{ids} ({parsed['seconds']:.2f} s)")]
    for dag_id, problems in dags.items():
        results += [
            Result(FAIL, DAG_RULES, location(path), f"{dag_id}: {problem}") for problem in problems
        ] or [Result(OK, DAG_RULES, location(path), dag_id)]
    return results


def _line_in(traceback_text: str, path: str) -> int | None:
    """The DAG file's innermost line in a traceback: where its code failed."""
    lines = re.findall(rf'File "{re.escape(path)}", line (\d+)', traceback_text)
    return int(lines[-1]) if lines else None


def _exception_line(text: str) -> str:
    """The exception's own line: the first unindented line of the last traceback in ``text``
    (a message may go on over more lines, a SyntaxError's frame has the code and a caret)."""
    last = text.rpartition("Traceback (most recent call last):")[2]
    lines = (line for line in last.splitlines() if line and not line[0].isspace())
    return next(lines, text.strip() or "no output")
