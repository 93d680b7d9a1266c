"""The model version a rollout names, checked against the MLflow registry before anything
moves: a model or version that does not exist is refused at once, and the refusal lists
what does exist (a typo or a wrong default is fixed in one look, not retried)."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from ..training.registry import CHALLENGER, STATUS_TAG


class UnknownVersion(LookupError):
    """The registry has no such model or version; the message says what it has."""


def chosen_version(model: str, version: int | None) -> int:
    """``version`` of ``model`` when the registry has it; None: the one aliased challenger."""
    client = MlflowClient()
    registered = _registered(client, model)
    versions = {int(v.version): v for v in client.search_model_versions(f"name='{model}'")}
    if version is None:
        if CHALLENGER not in registered.aliases:
            raise UnknownVersion(
                f"{model}: no version given and none has alias {CHALLENGER!r}; "
                f"{_listing(registered, versions)}"
            )
        return int(registered.aliases[CHALLENGER])
    if version not in versions:
        raise UnknownVersion(f"{model} has no version {version}; {_listing(registered, versions)}")
    return version


def _registered(client: MlflowClient, model: str) -> RegisteredModel:
    try:
        return client.get_registered_model(model)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        names = sorted(m.name for m in client.search_registered_models())
        known = ", ".join(names) or "none yet (yield_training registers one when its gate passes)"
        raise UnknownVersion(f"model {model!r} is not registered; registered: {known}") from exc


def _listing(registered: RegisteredModel, versions: dict[int, ModelVersion]) -> str:
    """``versions: v1 (retired), v2 (champion), v3 (challenger)``: aliases, else status."""
    aliases: dict[int, list[str]] = {}
    for alias, number in registered.aliases.items():
        aliases.setdefault(int(number), []).append(alias)
    described = []
    for number in sorted(versions):
        labels = aliases.get(number) or [versions[number].tags.get(STATUS_TAG, "")]
        label = ", ".join(sorted(filter(None, labels)))
        described.append(f"v{number}" + (f" ({label})" if label else ""))
    return f"versions: {', '.join(described) or 'none'}"
