#!/usr/bin/env bash
# airflow-init (docker-compose.yaml): a one-shot run as root before every Airflow
# component starts.
#  1. The shared volumes' folders exist and belong to the Airflow user (AIRFLOW_UID,
#     group 0), so any component may write them whatever uid the host gave.
#  2. The image's entrypoint, called with _AIRFLOW_DB_MIGRATE and _AIRFLOW_WWW_USER_CREATE
#     set, migrates the metadata database and creates the admin user (as Airflow's
#     reference docker-compose.yaml does); `airflow version` is only what it then runs.
set -euo pipefail

: "${AIRFLOW_UID:?AIRFLOW_UID must be set (the host user id owning the shared files)}"
: "${YIELDOPS_HOME:?}" "${YIELDOPS_CURATED_DIR:?}" "${YIELDOPS_DATA_DOCS_DIR:?}"

folders=(/opt/airflow/logs "$YIELDOPS_HOME" "$YIELDOPS_CURATED_DIR" "$YIELDOPS_DATA_DOCS_DIR")
mkdir -p "${folders[@]}"
# Only the folders themselves: what is inside was written by that user already, and a
# recursive chown of years of curated data would slow every start.
chown "${AIRFLOW_UID}:0" "${folders[@]}"
chmod 2775 "${folders[@]}"
echo "shared folders (owner ${AIRFLOW_UID}:0):"
ls -ld "${folders[@]}"

echo "migrating the metadata database, creating the admin user if missing:"
/entrypoint airflow version
