"""The demo stack on loopback: MLflow tracking server, prediction gateway, Airflow.

Everything lives under one home folder (``var/demo`` by default): Airflow's home and
SQLite database, MLflow's store and artifacts, the landing zone, curated data, ledger,
prediction log, audit log and every service's log file. Ports are free ones picked at
start. The Airflow side is configured only through environment variables
(``AIRFLOW__*``, ``AIRFLOW_CONN_*``, ``YIELDOPS_*``), as a deployment would be.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..layout import dags_folder, plugins_folder
from ..names import model_name
from ..serving.settings import GatewaySettings
from .processes import Service, free_port, stop_leftovers, stop_services, write_pid_file

PRODUCT = "YO-7NM-ADC"
MODEL = model_name(PRODUCT)
GATEWAY_CONN_ID = "yieldops_gateway_adc"  # the adc-local target of include/config/targets.yaml
AIRFLOW_USER = "admin"
# Short rollout steps so the demo reaches a champion in minutes, not hours.
DEMO_ROLLOUT = {
    "YIELDOPS_ROLLOUT_STEP_SECONDS": "10",
    "YIELDOPS_ROLLOUT_MIN_SAMPLES": "100",
    "YIELDOPS_ROLLOUT_POLL_SECONDS": "2",
    "YIELDOPS_ROLLOUT_CANARY_STEPS": "5,25,50,100",
    "YIELDOPS_SENSOR_POKE_SECONDS": "5",
}


@dataclass
class Ports:
    airflow: int = field(default_factory=free_port)
    mlflow: int = field(default_factory=free_port)
    gateway: int = field(default_factory=free_port)


@dataclass
class DemoStack:
    home: Path
    ports: Ports = field(default_factory=Ports)
    services: list[Service] = field(default_factory=list)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    airflow_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    # -- where things are ----------------------------------------------------------------------

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.airflow}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.mlflow}"

    @property
    def gateway_url(self) -> str:
        return self.gateway_settings().url

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def prediction_log_url(self) -> str:
        return f"sqlite:///{self.home / 'predictions.db'}"

    def gateway_settings(self) -> GatewaySettings:
        """The gateway's, as it reads them and as Airflow's connection to it names them."""
        return GatewaySettings(
            model_name=MODEL,
            routing_path=self.home / "gateway-routing.json",
            log_url=self.prediction_log_url,
            admin_token=self.admin_token,
            port=self.ports.gateway,
        )

    @property
    def pid_file(self) -> Path:
        return self.home / "pids.json"

    @property
    def mlflow_backend_store_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifacts_destination(self) -> str:
        return str(self.home / "mlartifacts")

    def yieldops_env(self) -> dict[str, str]:
        """What every process of the stack shares."""
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "YIELDOPS_HOME": str(self.home),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            **DEMO_ROLLOUT,
        }

    def airflow_env(self) -> dict[str, str]:
        gateway = self.gateway_settings().airflow_connection()
        airflow_api = {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": self.ports.airflow,
            "login": AIRFLOW_USER,
            "password": self.airflow_password,
        }
        return {
            **self.yieldops_env(),
            "AIRFLOW_HOME": str(self.home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__API__PORT": str(self.ports.airflow),
            "AIRFLOW__API__BASE_URL": self.airflow_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
            f"AIRFLOW_CONN_{GATEWAY_CONN_ID.upper()}": json.dumps(gateway),
            "AIRFLOW_CONN_YIELDOPS_AIRFLOW_API": json.dumps(airflow_api),
        }

    @property
    def passwords_file(self) -> Path:
        return self.home / "airflow" / "passwords.json"

    # -- services ------------------------------------------------------------------------------

    def mlflow_service(self) -> Service:
        return Service(
            "mlflow",
            [sys.executable, "-m", "mlflow", "server"],
            {
                **self.yieldops_env(),
                "MLFLOW_HOST": "127.0.0.1",
                "MLFLOW_PORT": str(self.ports.mlflow),
                "MLFLOW_WORKERS": "1",
                "MLFLOW_BACKEND_STORE_URI": self.mlflow_backend_store_uri,
                # Clients up- and download artifacts through the server (mlflow-artifacts:/).
                "MLFLOW_ARTIFACTS_DESTINATION": self.mlflow_artifacts_destination,
                # No server-side jobs (GenAI evaluation): they would start eight more processes.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            },
            self.home / "logs" / "mlflow.log",
            f"{self.mlflow_url}/health",
        )

    def gateway_service(self) -> Service:
        return Service(
            "gateway",
            [sys.executable, "-m", "yieldops.serving"],
            {**self.yieldops_env(), **self.gateway_settings().to_environment()},
            self.home / "logs" / "gateway.log",
            f"{self.gateway_url}/healthz",
        )

    def airflow_services(self) -> list[Service]:
        """``airflow standalone``: every Airflow component in one process tree."""
        return [
            Service(
                "airflow",
                [sys.executable, "-m", "airflow", "standalone"],
                self.airflow_env(),
                self.home / "logs" / "airflow.log",
                self.airflow_health_url,
                healthy=airflow_healthy,
                # Its components stop in seconds, but the scheduler's LocalExecutor can wait
                # forever on a worker stuck on the task queue's lock (apache/airflow#67870).
                stop_grace=10,
            )
        ]

    @property
    def airflow_health_url(self) -> str:
        return f"{self.airflow_url}/api/v2/monitor/health"

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, say=print) -> None:
        """Stop what an earlier run left, then start MLflow, the gateway and Airflow."""
        left = stop_leftovers(self.pid_file)
        if left:
            say(f"stopped what an earlier run left running: {', '.join(left)}")
        try:
            self.prepare(say)
            self.launch([self.mlflow_service(), self.gateway_service()])
            self.prepare_airflow(say)
            self.launch(self.airflow_services())
            self.wait_ready(say)
        except BaseException:
            self.stop()
            raise

    def prepare(self, say=print) -> None:
        """What the services need before they start: folders and the Airflow password."""
        for folder in ("landing", "airflow", "logs"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        self.passwords_file.write_text(json.dumps({AIRFLOW_USER: self.airflow_password}))

    def prepare_airflow(self, say=print) -> None:
        """What Airflow needs before it starts (standalone creates its database itself)."""

    def launch(self, services: list[Service]) -> None:
        """Start ``services``, each recorded in the pid file as soon as it runs."""
        for service in services:
            self.services.append(service)
            service.start()
            write_pid_file(self.pid_file, self.services)

    def wait_ready(self, say=print, timeout: float = 300) -> None:
        """Until every service is ready; fails as soon as any of them exits."""
        deadline = time.monotonic() + timeout
        for service in self.services:
            say(f"waiting for {service.name} ({service.ready_url or service.log_path}) ...")
            while not service.ready():
                for other in self.services:
                    other.check_running()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service.name} not ready after {timeout:.0f} s")
                time.sleep(1)

    def stop(self) -> None:
        stop_services(self.services)
        self.pid_file.unlink(missing_ok=True)

    # -- Airflow's REST API --------------------------------------------------------------------

    def airflow(self) -> httpx.Client:
        """A client on Airflow's REST API with a token for the demo user."""
        token = httpx.post(
            f"{self.airflow_url}/auth/token",
            json={"username": AIRFLOW_USER, "password": self.airflow_password},
            timeout=30,
        )
        token.raise_for_status()
        return httpx.Client(
            base_url=f"{self.airflow_url}/api/v2",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )


def airflow_healthy(response: httpx.Response) -> bool:
    """Airflow's health: metadatabase, scheduler, triggerer and dag processor all healthy."""
    if response.status_code != 200:
        return False
    return all(
        (part or {}).get("status") == "healthy"
        for name, part in response.json().items()
        if name in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    )
