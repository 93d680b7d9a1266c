"""DAG run notes: the one-line verdict people see on a run in the Airflow UI.

Tasks cannot write notes through the Task SDK, so this goes through Airflow's
REST API (``PATCH /api/v2/dags/{dag}/dagRuns/{run}``) with the credentials of
HTTP connection ``yieldops_airflow_api`` (host, port, schema http/https,
login, password). Without that connection the note is only logged; a failure
to set it never fails the task.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook

log = logging.getLogger(__name__)
API_CONN_ID = "yieldops_airflow_api"
MAX_NOTE = 1000  # the API's limit


def set_run_note(dag_id: str, run_id: str, note: str) -> bool:
    import requests
    from airflow.sdk.exceptions import AirflowNotFoundException

    note = note[:MAX_NOTE]
    try:
        conn = BaseHook.get_connection(API_CONN_ID)
    except AirflowNotFoundException:
        log.info("run note (no %r connection to set it): %s", API_CONN_ID, note)
        return False
    base = base_url(conn)
    try:
        token = requests.post(
            f"{base}/auth/token",
            json={"username": conn.login, "password": conn.password},
            timeout=10,
        )
        token.raise_for_status()
        response = requests.patch(
            f"{base}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
            params={"update_mask": "note"},
            json={"note": note},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=10,
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        log.warning("could not set the run note through %s: %s; note: %s", base, exc, note)
        return False
    log.info("run note set: %s", note)
    return True


def base_url(conn: Any) -> str:
    """``scheme://host[:port]`` of an HTTP connection (schema http by default)."""
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.schema or 'http'}://{conn.host}{port}"
