"""The production stack, checked without Docker: docker-compose.yaml (with the events-mode
override docker/compose.aws-events.yaml), the Dockerfile, .dockerignore and .env.example.

The compose file is read as Compose reads it: YAML anchors and merge keys resolved, then
``${VAR}`` interpolated from .env.example (secrets filled with stand-ins). It is validated
against the Compose Specification's JSON schema (docker/compose-spec.json) and then
against the code: the variable names the code reads, the gateway targets, Airflow's
configuration options, MLflow's server options. Where a Docker Compose v2 binary exists,
`docker compose config` checks the same files and its interpolation is compared with ours.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import jsonschema
import pytest
import yaml

from yieldops.names import model_name
from yieldops.serving.settings import ENVIRONMENT as GATEWAY_ENVIRONMENT
from yieldops.serving.settings import GatewaySettings
from yieldops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
EVENTS = ROOT / "docker" / "compose.aws-events.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA = ROOT / "docker" / "compose-spec.json"
POSTGRES_INIT = ROOT / "docker" / "postgres-init.sql"
MINIO_INIT = ROOT / "docker" / "minio-init.sh"
TARGETS = ROOT / "include" / "config" / "targets.yaml"
CONSTRAINTS = ROOT / "requirements" / "constraints-3.11.txt"

TOP_LEVEL_KEYS = {"name", "services", "networks", "volumes", "configs", "secrets", "include"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
LONG_RUNNING_RESTART = {"always", "unless-stopped"}
AIRFLOW_COMMANDS = {"api-server", "scheduler", "dag-processor", "triggerer", "celery worker"}
GATEWAY_COMMAND = ["python", "-m", "yieldops.serving"]


# -- interpolation, as Compose does it ------------------------------------------------------

_DOLLAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_]\w*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


class Ref(NamedTuple):
    """One ``${name<op>arg}``: op is "" (plain), ":-"/"-" (default), ":?"/"?" (required)
    or ":+"/"+" (alternative)."""

    name: str
    op: str
    arg: str

    @property
    def has_default(self) -> bool:
        return self.op in (":-", "-")


def references(text: str) -> list[Ref]:
    refs = []
    for match in _DOLLAR.finditer(text):
        if match["escaped"]:
            continue
        if match["named"]:
            refs.append(Ref(match["named"], "", ""))
            continue
        braced = _BRACED.fullmatch(match["braced"])
        assert braced, f"not a Compose variable: ${{{match['braced']}}}"
        assert "$" not in (braced["arg"] or ""), f"nested interpolation: {match[0]}"
        refs.append(Ref(braced["name"], braced["op"] or "", braced["arg"] or ""))
    return refs


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        ref = references(match[0])[0]
        value = env.get(ref.name)
        # ":" forms treat an empty value as unset, the others only a missing one
        unset = not value if ref.op.startswith(":") else value is None
        if ref.op in (":-", "-"):
            return ref.arg if unset else value
        if ref.op in (":?", "?"):
            assert not unset, f"required variable {ref.name} is not set: {ref.arg}"
            return value
        if ref.op in (":+", "+"):
            return "" if unset else ref.arg
        return value or ""

    return _DOLLAR.sub(one, text)


def strings(node: Any):
    """Every string value in a loaded YAML document (mapping keys are not interpolated)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return node


# -- the files --------------------------------------------------------------------------------


class EnvExample(NamedTuple):
    active: dict[str, str]  # NAME=value lines
    documented: dict[str, str]  # "# NAME=value" lines: optional, for the events override


def read_env_example() -> EnvExample:
    active, documented = {}, {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Za-z_]\w*)=(.*)", line):
            active[match[1]] = _unquoted(match[2])
        elif match := re.fullmatch(r"# ([A-Z_][A-Z0-9_]*)=(.*)", line):
            documented[match[1]] = _unquoted(match[2])
    return EnvExample(active, documented)


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def stand_in_env(with_documented: bool = False) -> dict[str, str]:
    """.env.example as a deployer would fill it: every empty value gets a stand-in."""
    example = read_env_example()
    values = dict(example.active)
    if with_documented:
        values.update(example.documented)
    return {name: value or f"{name.lower().strip('_')}-stand-in" for name, value in values.items()}


@cache
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@cache
def raw_events() -> dict:
    return yaml.safe_load(EVENTS.read_text())


@cache
def compose() -> dict:
    return resolve(raw_compose(), stand_in_env())


def services() -> dict[str, dict]:
    return compose()["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def common_env() -> dict[str, str]:
    return environment(compose()["x-airflow-common"])


def command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def airflow_services() -> dict[str, dict]:
    return {
        name: service
        for name, service in services().items()
        if name.startswith("airflow-") or name == "flower"
    }


def service_by_command(cmd: str) -> str:
    (name,) = (n for n, s in airflow_services().items() if " ".join(command(s)) == cmd)
    return name


def container_ports(service: dict) -> set[int]:
    return {int(str(port).rsplit(":", 1)[1]) for port in service.get("ports", [])}


def healthcheck_port(service: dict) -> int | None:
    match = re.search(r"http://localhost:(\d+)", " ".join(service["healthcheck"]["test"]))
    return int(match[1]) if match else None


def connection(env: dict[str, str], conn_id: str) -> dict:
    key = f"AIRFLOW_CONN_{conn_id.upper()}"
    assert key in env, f"no {key} for connection {conn_id!r}"
    return json.loads(env[key])


def all_environments() -> dict[str, dict[str, str]]:
    return {name: environment(service) for name, service in services().items()}


def postgres_urls() -> list[tuple[str, str]]:
    """(where, url) of every PostgreSQL URL in the stack, connection extras included."""
    found = []
    for name, env in all_environments().items():
        for key, value in env.items():
            for url in re.findall(r"(?:db\+)?postgresql[\w+]*://[^\s\"']+", value):
                found.append((f"{name}: {key}", url))
    return found


def created_databases() -> set[str]:
    sql = re.sub(r"--[^\n]*", "", POSTGRES_INIT.read_text())
    return set(re.findall(r"CREATE DATABASE (\w+)\s*;", sql, flags=re.IGNORECASE))


def env_names_read_by_code() -> set[str]:
    """YIELDOPS_* names the code reads: os.environ.get / getenv / _env / env(...) calls and
    os.environ[...] subscripts with a literal name, under include/yieldops and plugins, and
    the gateway's (GatewaySettings.from_environment reads its declared ENVIRONMENT)."""
    names = {variable for variable, _ in GATEWAY_ENVIRONMENT.values()}
    readers = {"get", "getenv", "_env", "env", "pop", "setdefault"}
    files = [*(ROOT / "include" / "yieldops").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            literal = None
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                func_name = (
                    func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                )
                if func_name in readers:
                    literal = node.args[0]
            elif isinstance(node, ast.Subscript):
                literal = node.slice
            if (
                isinstance(literal, ast.Constant)
                and isinstance(literal.value, str)
                and re.fullmatch(r"YIELDOPS_[A-Z0-9_]*[A-Z0-9]", literal.value)
            ):
                names.add(literal.value)
    return names


# -- the specification and the structure --------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(lambda: compose(), id="compose"),
        pytest.param(lambda: raw_events(), id="events"),
    ],
)
def test_files_follow_the_compose_specification(document):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(document()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_top_level_keys():
    unknown = {k for k in raw_compose() if k not in TOP_LEVEL_KEYS and not k.startswith("x-")}
    assert not unknown
    assert raw_compose()["name"] == "yieldops"


def test_every_service_has_an_image_and_a_restart_policy():
    for name, service in services().items():
        assert service.get("image") or service.get("build"), name
        restart = service.get("restart")
        assert restart == "no" or restart in LONG_RUNNING_RESTART, f"{name}: restart {restart!r}"


def test_long_running_services_have_healthchecks():
    for name, service in services().items():
        if service["restart"] == "no":  # one-shot: others wait for it to complete
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert isinstance(check["test"], list) and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert re.fullmatch(r"\d+s", check["interval"]), name
        assert re.fullmatch(r"\d+s", check["timeout"]), name
        assert int(check["retries"]) >= 3, name


def test_depends_on():
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            assert target in all_services, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            assert condition in CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert all_services[target].get("healthcheck"), f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert all_services[target]["restart"] == "no", f"{target} is not one-shot"
            if all_services[target]["restart"] == "no":
                assert condition == "service_completed_successfully", f"{name} -> {target}"
    # no cycles: a topological order exists
    remaining = {n: set(s.get("depends_on", {})) for n, s in all_services.items()}
    while remaining:
        ready = [n for n, deps in remaining.items() if not deps & remaining.keys()]
        assert ready, f"depends_on cycle among {sorted(remaining)}"
        for n in ready:
            del remaining[n]


def test_startup_order_where_it_matters():
    s = services()

    def waits(name: str, target: str, condition: str) -> bool:
        return s[name].get("depends_on", {}).get(target, {}).get("condition") == condition

    for name in airflow_services():
        assert waits(name, "postgres", "service_healthy"), name
        assert waits(name, "redis", "service_healthy"), name
        if name != "airflow-init":
            assert waits(name, "airflow-init", "service_completed_successfully"), name
    worker = service_by_command("celery worker")
    assert waits(worker, service_by_command("api-server"), "service_healthy")
    assert waits(worker, "mlflow", "service_healthy")
    for name in (worker, service_by_command("triggerer")):  # they read the landing bucket
        assert waits(name, "minio-init", "service_completed_successfully"), name
    assert waits("minio-init", "minio", "service_healthy")
    assert waits("mlflow", "postgres", "service_healthy")
    assert waits("mlflow", "minio-init", "service_completed_successfully")
    for name in gateway_services():
        assert waits(name, "postgres", "service_healthy"), name
        assert waits(name, "mlflow", "service_healthy"), name


def test_ports_are_host_to_container_numbers():
    published: list[tuple[str, int]] = []
    for name, service in services().items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: quote port {port!r} (YAML reads 1:2 as base 60)"
            match = re.fullmatch(r"(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)", port)
            assert match, f"{name}: port {port!r} is not [ip:]host:container"
            host, container = int(match[2]), int(match[3])
            assert 0 < host < 65536 and 0 < container < 65536, f"{name}: {port}"
            published.append((match[1] or "0.0.0.0", host))
    assert len(published) == len(set(published)), f"a host port is published twice: {published}"


def test_raw_ports_listen_on_the_bind_address():
    for name, service in raw_compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith(("${BIND_ADDRESS:-127.0.0.1}:", "127.0.0.1:")), f"{name}: {port}"


def test_volumes_are_declared_and_used():
    declared = set(compose().get("volumes") or {})
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert target.startswith("/"), f"{name}: {volume}"
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount of missing {source}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert declared == used, f"declared but unused: {declared - used}"


# -- variables ----------------------------------------------------------------------------------


def compose_references() -> list[Ref]:
    return [ref for text in strings(raw_compose()) for ref in references(text)]


def events_references() -> list[Ref]:
    return [ref for text in strings(raw_events()) for ref in references(text)]


def test_every_variable_is_in_env_example_or_has_a_default():
    example = read_env_example()
    for ref in compose_references():
        if not ref.has_default:
            assert ref.name in example.active, f"${{{ref.name}}} is not in .env.example"
            assert ref.op in (":?", "?"), f"${{{ref.name}}} without default must be ${{VAR:?msg}}"
            assert ref.arg.strip(), f"${{{ref.name}:?}} needs a message"
    for ref in events_references():
        if not ref.has_default:
            assert ref.name in example.active or ref.name in example.documented, ref.name
            assert ref.op in (":?", "?") and ref.arg.strip(), ref.name


def test_every_variable_in_env_example_is_used():
    example = read_env_example()
    used = {ref.name for ref in compose_references()}
    for name in example.active:
        assert name in used, f".env.example sets {name}, which docker-compose.yaml never uses"
    used_by_events = {ref.name for ref in events_references()}
    for name in example.documented:
        assert name in used_by_events, f".env.example documents {name}, used by no compose file"


def test_env_example_secrets_are_empty_and_defaults_agree():
    example = read_env_example()
    defaults: dict[str, set[str]] = {}
    for ref in compose_references():
        if ref.op in (":?", "?"):
            assert example.active.get(ref.name) == "", (
                f"{ref.name} is a required secret: leave it empty in .env.example"
            )
        if ref.has_default:
            defaults.setdefault(ref.name, set()).add(ref.arg)
    for name, values in defaults.items():
        assert len(values) == 1, f"${{{name}}} has different defaults: {values}"
        if name in example.active:
            assert example.active[name] == next(iter(values)), f"{name}: .env.example != default"


def test_env_example_says_how_to_generate_every_secret():
    lines = ENV_EXAMPLE.read_text().splitlines()
    secrets = [i for i, line in enumerate(lines) if re.fullmatch(r"[A-Za-z_]\w*=", line)]
    assert len(secrets) >= 5
    for i in secrets:  # the comment right above an empty secret gives a command making one
        above = lines[i - 1]
        assert above.startswith("#"), f"{lines[i]}: no comment above it"
        assert "openssl rand" in above or "Fernet.generate_key()" in above, lines[i]


def test_yieldops_variables_are_ones_the_code_reads():
    known = env_names_read_by_code()
    assert {"YIELDOPS_LANDING_URL", "YIELDOPS_GATEWAY_LOG_URL", "YIELDOPS_CONFIG_DIR"} <= known
    used = {ref.name for ref in compose_references() + events_references()}
    for document in (raw_compose(), raw_events()):
        for key in _environment_keys(document):
            used.add(key)
    used |= set(re.findall(r"\bYIELDOPS_[A-Z0-9_]+", DOCKERFILE.read_text()))
    unknown = {name for name in used if name.startswith("YIELDOPS_")} - known
    assert not unknown, f"no code reads {sorted(unknown)}"


def _environment_keys(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("environment", "args") and isinstance(value, dict):
                yield from value
            else:
                yield from _environment_keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _environment_keys(value)


# -- Airflow --------------------------------------------------------------------------------------


def test_airflow_services_share_the_common_environment():
    common = common_env()
    base = compose()["x-airflow-common"]
    for name, service in airflow_services().items():
        env = environment(service)
        differing = {k for k, v in common.items() if env.get(k) != v}
        assert not differing, f"{name} lacks or changes {sorted(differing)}"
        assert service["image"] == base["image"] and service["build"] == base["build"], name
        assert "yieldops-data:/opt/yieldops/data" in service["volumes"], name
        assert "airflow-logs:/opt/airflow/logs" in service["volumes"], name
    commands = {" ".join(command(s)) for s in airflow_services().values()}
    assert commands >= AIRFLOW_COMMANDS


def test_celery_executor_with_redis_and_postgres():
    env = common_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis" and broker.port == 6379
    assert broker.password == environment(services()["redis"])["REDISCLI_AUTH"]
    backend = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert backend.scheme.startswith("db+postgresql") and backend.hostname == "postgres"
    metadata = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert metadata.scheme.startswith("postgresql") and metadata.hostname == "postgres"
    # psycopg 3 serves the async engine too; asyncpg (Airflow's default) is not pinned here
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == urlunsplit(metadata)
    assert backend.path == metadata.path == "/" + environment(services()["postgres"])["POSTGRES_DB"]


def test_lost_workers_come_back_as_in_the_local_stack():
    """The timeouts that bound how soon a dead worker's tasks run again are the ones the
    local production stack runs with (and its stack test kills workers under), and no more
    tasks are queued than the workers have slots (a task waiting its turn is never caught
    by the queued timeout)."""
    from yieldops.deployment import LOST_WORKER_SETTINGS

    env = common_env()
    assert {key: env.get(key) for key in LOST_WORKER_SETTINGS} == LOST_WORKER_SETTINGS
    replicas = services()[service_by_command("celery worker")].get("deploy", {}).get("replicas", 1)
    slots = replicas * int(env["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) == slots


def test_execution_api_points_at_the_api_server():
    url = urlsplit(common_env()["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    api_server = service_by_command("api-server")
    assert url.hostname == api_server
    assert url.port in container_ports(services()[api_server])
    assert url.port == healthcheck_port(services()[api_server])
    assert url.path == "/execution/"


def test_airflow_init_migrates_and_creates_the_admin():
    init = services()["airflow-init"]
    env = environment(init)
    assert env["_AIRFLOW_DB_MIGRATE"] == "true" and env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert init["user"] == "0:0"  # chown of the shared folders
    script = init["entrypoint"][-1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in init["volumes"]}
    assert script in mounts and (ROOT / mounts[script]).is_file()
    assert "/entrypoint airflow version" in (ROOT / mounts[script]).read_text()
    api = connection(common_env(), _airflow_api_conn_id())
    assert api["host"] == service_by_command("api-server")
    assert api["login"] == env["_AIRFLOW_WWW_USER_USERNAME"]
    assert api["password"] == env["_AIRFLOW_WWW_USER_PASSWORD"]


def _airflow_api_conn_id() -> str:
    source = (ROOT / "plugins" / "yieldops_airflow" / "notes.py").read_text()
    return re.search(r'^API_CONN_ID = "(\w+)"', source, re.MULTILINE)[1]


def airflow_config_options() -> set[tuple[str, str]]:
    """(section, option) of Airflow core and of every installed provider."""
    spec = importlib.util.find_spec("airflow")
    assert spec and spec.submodule_search_locations
    core = Path(spec.submodule_search_locations[0]) / "config_templates" / "config.yml"
    sections = dict(yaml.safe_load(core.read_text()))
    for entry in importlib.metadata.entry_points(group="apache_airflow_provider"):
        sections.update(entry.load()().get("config") or {})
    return {(s, o) for s, body in sections.items() for o in (body.get("options") or {})}


def test_airflow_options_exist():
    options = airflow_config_options()
    assert ("celery", "broker_url") in options  # the celery provider's options are there
    for name, env in all_environments().items():
        for key in env:
            if match := re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", key):
                option = (match[1].lower(), match[2].lower())
                assert option in options, f"{name}: {key} is no Airflow option"


# -- yieldops: landing zone, ledger, MLflow, gateways ----------------------------------------------


def gateway_services() -> dict[str, dict]:
    return {n: s for n, s in services().items() if command(s) == GATEWAY_COMMAND}


def test_gateway_connections_match_targets_and_services():
    targets = yaml.safe_load(TARGETS.read_text())["targets"]
    assert targets
    env = common_env()
    gateways = gateway_services()
    served = set()
    for target in targets:
        conn = connection(env, target["conn_id"])
        gateway = gateways.get(conn.get("host"))
        assert gateway, f"{target['name']}: {conn.get('host')} is no gateway service"
        genv = environment(gateway)
        settings = GatewaySettings.from_environment(genv)
        # The connection is the one the gateway's own settings give, at its service's name:
        # http, its port, password = its admin token, extra = its prediction log.
        assert conn == settings.airflow_connection(host=conn["host"]), target["name"]
        assert settings.model_name == model_name(target["product"])
        assert settings.host == "0.0.0.0"  # reachable from other containers
        assert settings.port == healthcheck_port(gateway)
        assert settings.port in container_ports(gateway)
        assert str(settings.routing_path).startswith(genv["YIELDOPS_HOME"] + "/")
        assert any(v.endswith(":" + genv["YIELDOPS_HOME"]) for v in gateway["volumes"])
        assert settings.mlflow_tracking_uri == env["MLFLOW_TRACKING_URI"]
        served.add(conn["host"])
    assert served == set(gateways), f"gateways no target uses: {set(gateways) - served}"
    logs = [GatewaySettings.from_environment(environment(g)).log_url for g in gateways.values()]
    assert len(logs) == len(set(logs)), "each gateway needs its own prediction log"


def minio_init_env() -> dict[str, str]:
    return environment(services()["minio-init"])


def test_landing_zone_is_the_minio_bucket():
    env = common_env()
    landing = urlsplit(env["YIELDOPS_LANDING_URL"])
    assert landing.scheme == "s3" and landing.netloc == minio_init_env()["LANDING_BUCKET"]
    assert landing.path.endswith("/") and landing.path != "/"
    assert env["YIELDOPS_INGEST_TRIGGER"] in ("sensor", "sweep")  # no SQS from MinIO
    aws = connection(env, Settings().aws_conn_id)
    assert aws["conn_type"] == "aws"
    assert urlsplit(aws["extra"]["endpoint_url"]).hostname == "minio"
    assert aws["login"] == minio_init_env()["MINIO_AIRFLOW_ACCESS_KEY"]
    assert aws["password"] == minio_init_env()["MINIO_AIRFLOW_SECRET_KEY"]
    assert env["YIELDOPS_CURATED_DIR"].startswith("/opt/yieldops/data/")
    assert env["YIELDOPS_DATA_DOCS_DIR"].startswith("/opt/yieldops/data/")


def test_minio_init_creates_the_buckets_and_users():
    script = MINIO_INIT.read_text()
    assert 'mc mb --ignore-existing "local/$LANDING_BUCKET"' in script
    assert 'mc mb --ignore-existing "local/$ARTIFACTS_BUCKET"' in script
    for user in ("MINIO_AIRFLOW", "MINIO_MLFLOW"):
        assert f'bucket_user "${user}_ACCESS_KEY" "${user}_SECRET_KEY"' in script
    init = services()["minio-init"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in init["volumes"]}
    assert ROOT / mounts[init["entrypoint"][-1]] == MINIO_INIT
    assert (
        minio_init_env()["MINIO_ROOT_PASSWORD"]
        == environment(services()["minio"])["MINIO_ROOT_PASSWORD"]
    )


def mlflow_env_names() -> set[str]:
    """MLFLOW_* variables MLflow reads: its environment_variables module and the envvars of
    its CLI options (`mlflow server --help`), read from the source (importing mlflow.cli
    takes seconds)."""
    spec = importlib.util.find_spec("mlflow")
    assert spec and spec.submodule_search_locations
    package = Path(spec.submodule_search_locations[0])
    sources = [package / "environment_variables.py", package / "utils" / "cli_args.py"]
    names = set()
    for path in [*sources, *(package / "cli").glob("*.py")]:
        names |= set(re.findall(r"[\"'](MLFLOW_[A-Z0-9_]+)[\"']", path.read_text()))
    return names


def test_mlflow_server():
    mlflow = services()["mlflow"]
    env = environment(mlflow)
    assert command(mlflow) == ["python", "-m", "mlflow", "server"]
    known = mlflow_env_names()
    assert "MLFLOW_BACKEND_STORE_URI" in known and "MLFLOW_S3_ENDPOINT_URL" in known
    for name, service_env in all_environments().items():
        unknown = {k for k in service_env if k.startswith("MLFLOW_")} - known
        assert not unknown, f"{name}: MLflow reads no {sorted(unknown)}"
    assert urlsplit(env["MLFLOW_BACKEND_STORE_URI"]).path == "/mlflow"
    artifacts = urlsplit(env["MLFLOW_ARTIFACTS_DESTINATION"])
    assert artifacts.scheme == "s3" and artifacts.netloc == minio_init_env()["ARTIFACTS_BUCKET"]
    assert env["MLFLOW_SERVE_ARTIFACTS"] == "true"
    assert env["MLFLOW_DEFAULT_ARTIFACT_ROOT"] == "mlflow-artifacts:/"
    assert urlsplit(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "minio"
    assert env["AWS_ACCESS_KEY_ID"] == minio_init_env()["MINIO_MLFLOW_ACCESS_KEY"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio_init_env()["MINIO_MLFLOW_SECRET_KEY"]
    tracking = urlsplit(common_env()["MLFLOW_TRACKING_URI"])
    assert tracking.hostname == "mlflow"
    assert tracking.port == int(env["MLFLOW_PORT"]) == healthcheck_port(mlflow)
    assert env["MLFLOW_HOST"] == "0.0.0.0"
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert "mlflow" in allowed and f"mlflow:{tracking.port}" in allowed


def test_postgres_databases_exist_and_are_used():
    postgres = environment(services()["postgres"])
    databases = created_databases() | {postgres["POSTGRES_DB"]}
    assert {"mlflow", "yieldops"} <= databases
    mounted = [v for v in services()["postgres"]["volumes"] if v.startswith("./")]
    assert any(
        ROOT / v.split(":")[0] == POSTGRES_INIT
        and v.split(":")[1].startswith("/docker-entrypoint-initdb.d/")
        for v in mounted
    )
    used = set()
    for where, url in postgres_urls():
        parts = urlsplit(url)
        assert parts.hostname == "postgres", where
        assert parts.username == postgres["POSTGRES_USER"], where
        assert parts.password == postgres["POSTGRES_PASSWORD"], where
        database = parts.path.lstrip("/")
        assert database in databases, f"{where}: database {database} is never created"
        used.add(database)
    assert used == databases, f"created, never used: {databases - used}"
    # One driver, psycopg 3: a dependency of the package, so pinned by the constraints;
    # the base image's psycopg2 and asyncpg are not.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^\s*"psycopg[\[<>=~"]', pyproject, re.MULTILINE), "psycopg is no dependency"
    constraints_pin("psycopg")
    for where, url in postgres_urls():
        assert urlsplit(url).scheme in ("postgresql+psycopg", "db+postgresql+psycopg"), where


# -- events mode --------------------------------------------------------------------------------


def test_events_override_switches_every_airflow_service():
    events = raw_events()
    assert set(events["services"]) == set(airflow_services())
    for name, service in events["services"].items():
        assert set(service) == {"environment"}, name
        env = service["environment"]
        assert env["YIELDOPS_INGEST_TRIGGER"] == "events", name
        assert "YIELDOPS_SQS_QUEUE_URL" in env and "YIELDOPS_LANDING_URL" in env, name
        resolved = resolve(env, stand_in_env(with_documented=True))
        conn = json.loads(resolved["AIRFLOW_CONN_AWS_DEFAULT"])
        assert conn["conn_type"] == "aws" and "endpoint_url" not in conn["extra"]


# -- the image -------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def constraints_pin(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", CONSTRAINTS.read_text(), re.MULTILINE)
    assert match, f"{package} is not pinned in {CONSTRAINTS.name}"
    return match[1]


def test_dockerfile_base_image_matches_the_constraints():
    (base,) = [rest for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    python = re.fullmatch(r"constraints-(\d+\.\d+)\.txt", CONSTRAINTS.name)[1]
    assert base == f"apache/airflow:{constraints_pin('apache-airflow')}-python{python}"


def test_dockerfile_installs_the_package_with_the_constraints():
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    installs = [cmd for run in runs for cmd in run.split("&&") if "pip install" in cmd]
    assert len(installs) >= 1
    constraint = f"-c {CONSTRAINTS.relative_to(ROOT)}"
    for install in installs:
        assert constraint in install, f"unpinned: {install.strip()}"
        assert '".[celery]"' in install, install
    assert any("pip check" in run for run in runs)


def dockerfile_copies() -> list[tuple[list[str], str]]:
    copies = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            copies.append((args[:-1], args[-1]))
    return copies


def test_dockerfile_copies_dags_plugins_and_config():
    destinations = {
        src.rstrip("/"): dst.rstrip("/") for srcs, dst in dockerfile_copies() for src in srcs
    }
    for source in destinations:
        assert (ROOT / source).exists(), f"COPY of missing {source}"
    assert destinations["dags"] == "/opt/airflow/dags"
    assert destinations["plugins"] == "/opt/airflow/plugins"
    env = dict(
        item.split("=", 1)
        for keyword, rest in dockerfile_instructions()
        if keyword == "ENV"
        for item in shlex.split(rest)
    )
    assert env["YIELDOPS_CONFIG_DIR"] == destinations["include/config"]
    assert env["YIELDOPS_GIT_COMMIT"] == "${YIELDOPS_GIT_COMMIT}"
    assert "YIELDOPS_GIT_COMMIT" in compose()["x-yieldops-image"]["build"]["args"]


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((negate, re.compile(regex)))
    return patterns


def in_build_context(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or a parent folder decides."""
    parts = path.split("/")
    excluded = False
    for negate, regex in dockerignore_patterns():
        if any(regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return not excluded


def test_build_context_holds_what_the_dockerfile_copies_and_no_secrets():
    for sources, _ in dockerfile_copies():
        for source in sources:
            path = ROOT / source
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            assert files, source
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if "__pycache__" not in relative:
                    assert in_build_context(relative), f"{relative} is ignored but copied"
    for path in (
        ".env",
        ".venv/bin/python",
        "var/demo/airflow/airflow.db",
        "test-artifacts/report.xml",
        ".git/HEAD",
        "tests/unit/test_compose.py",
        "include/yieldops/__pycache__/settings.cpython-311.pyc",
        "include/yieldops/stdf/__pycache__/kernels.read_int-46.py311.nbi",
        "include/yieldops.egg-info/PKG-INFO",
        "plugins/.env",
        ".mypy_cache/3.11/x.json",
    ):
        assert not in_build_context(path), f"{path} would be sent to the builder"


# -- secrets stay out of git ------------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess:
    if not shutil.which("git") or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def test_env_file_is_ignored_and_never_committed():
    assert git("check-ignore", "-q", ".env").returncode == 0, ".env is not in .gitignore"
    assert git("check-ignore", "-q", ".env.example").returncode == 1, ".env.example is ignored"
    assert git("ls-files", "--", ".env").stdout == "", ".env is committed"
    assert git("log", "--all", "--format=%h", "--", ".env").stdout == "", ".env is in history"


def test_init_scripts_parse():
    for shell, script in (("bash", "airflow-init.sh"), ("sh", "minio-init.sh")):
        if not shutil.which(shell):
            continue
        done = subprocess.run([shell, "-n", str(ROOT / "docker" / script)], capture_output=True)
        assert done.returncode == 0, done.stderr


# -- Docker Compose itself, where there is one ---------------------------------------------------


def compose_cli() -> list[str] | None:
    """`docker compose` (the plugin) or a v2 `docker-compose`: both read files offline."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return [standalone]
    return None


@pytest.mark.parametrize("with_events", [False, True], ids=["compose", "compose+events"])
def test_docker_compose_config(tmp_path, with_events):
    cli = compose_cli()
    if cli is None:
        pytest.skip(
            "needs Docker Compose v2 (the `docker compose` plugin or a v2 docker-compose "
            "binary) to validate offline; this machine's docker client has no compose plugin"
        )
    env_file = tmp_path / "env"
    values = stand_in_env(with_documented=with_events)
    env_file.write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in values.items()))
    files = ["-f", str(COMPOSE), *(["-f", str(EVENTS)] if with_events else [])]
    options = ["--project-directory", str(ROOT), "--env-file", str(env_file), *files]
    done = subprocess.run(
        [*cli, *options, "--profile", "flower", "config", "--format", "json"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)["services"]
    assert set(theirs) == set(services())
    if with_events:
        return
    for name, service in services().items():  # their interpolation and merging are ours
        assert environment(theirs[name]) == environment(service), name
