"""The gateway's admin API as the rollout calls it (routing, rollback): httpx only, so an
Airflow task or page that steers a gateway never loads the web app or its models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class GatewayError(RuntimeError):
    """The gateway refused or could not be reached; the message names it and why."""


class GatewayNotConfigured(LookupError):
    """A target's gateway connection is not defined; the message says how to define it."""

    def __init__(self, target: str, conn_id: str, missing: str = "") -> None:
        problem = f"has no extra {missing}" if missing else "not configured"
        super().__init__(
            f"target {target}: gateway connection {conn_id!r} {problem}: add an HTTP "
            f"connection {conn_id!r} (host and port of the gateway, password = its admin "
            "token, extra prediction_log_url = the SQLAlchemy URL of its prediction log)"
        )


@dataclass(frozen=True)
class GatewayClient:
    url: str
    token: str = ""
    timeout: float = 30.0

    def routing(self) -> dict[str, Any]:
        return self._call("GET", "/v1/routing")

    def update(self, **changes: Any) -> dict[str, Any]:
        """Change routing fields; the gateway loads new versions before they take traffic."""
        return self._call("PUT", "/v1/routing", json=changes)

    def rollback(self) -> dict[str, Any]:
        """Back to the champion alone; the answer carries the gateway's ``took_ms``."""
        return self._call("POST", "/v1/routing/rollback")

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.request(
                method, self.url.rstrip("/") + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise GatewayError(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise GatewayError(
                f"{method} {self.url}{path}: {response.status_code} {response.text[:500]}"
            )
        return response.json()
