"""Notifications: where people hear that a run needs them."""

from __future__ import annotations

import json

from airflow.sdk import BaseHook, BaseNotifier

DEFAULT_CONN_ID = "yieldops_notify"


class YieldopsNotifier(BaseNotifier):
    """Posts a JSON message to the HTTP endpoint of Airflow connection ``conn_id``
    (e.g. a chat or incident webhook: host, port, schema http/https and the path
    as extra ``endpoint``); logs it when no such connection exists.

    Usable as a DAG or task ``on_failure_callback``, or called from task code
    with ``send(subject, details)``.
    """

    template_fields = ("subject",)

    def __init__(
        self,
        subject: str = "yieldops: {{ dag.dag_id }} needs attention",
        conn_id: str = DEFAULT_CONN_ID,
    ) -> None:
        super().__init__()
        self.subject = subject
        self.conn_id = conn_id

    def notify(self, context) -> None:
        ti = context.get("ti")
        details = {
            "dag_id": context["dag"].dag_id,
            "run_id": context.get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "exception": str(context.get("exception") or ""),
        }
        self.send(self.subject, details)

    def send(self, subject: str, details: dict) -> None:
        from airflow.providers.http.hooks.http import HttpHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        message = {"subject": subject, **details}
        try:
            conn = BaseHook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            self.log.warning(
                "notification (no connection %r): %s", self.conn_id, json.dumps(message)
            )
            return
        endpoint = conn.extra_dejson.get("endpoint", "")
        HttpHook(method="POST", http_conn_id=self.conn_id).run(endpoint=endpoint, json=message)
        self.log.info("notification sent through %r: %s", self.conn_id, subject)
