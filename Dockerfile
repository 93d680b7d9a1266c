# syntax=docker/dockerfile:1
# The yieldops image: Airflow with the yieldops package, its DAGs, plugins and product /
# target configuration. docker-compose.yaml runs every Airflow component, the MLflow
# tracking server and the prediction gateways from it.
#
# The base tag is the apache-airflow version and Python of requirements/constraints-3.11.txt,
# and the package installs pinned by that file, the versions the test suite ran with
# (tests/unit/test_compose.py keeps the two in step).
#
#   docker build --build-arg YIELDOPS_GIT_COMMIT="$(git rev-parse HEAD)" -t yieldops-airflow .
FROM apache/airflow:3.3.2-python3.11

USER root
# Home of the shared data volume and of the gateways' state; group 0 writable, so any
# uid the compose file runs as (AIRFLOW_UID, group 0) can write there.
RUN mkdir -p /opt/yieldops/data /opt/yieldops/gateway /opt/yieldops/src /opt/airflow/include \
    && chown -R airflow:0 /opt/yieldops /opt/airflow/include \
    && chmod -R g+rwX /opt/yieldops
USER airflow

WORKDIR /opt/yieldops/src
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 requirements/constraints-3.11.txt requirements/constraints-3.11.txt

# Dependencies first, from the package metadata and an empty package: this layer stays
# cached while only the code changes.
RUN mkdir -p include/yieldops \
    && touch include/yieldops/__init__.py \
    && pip install --no-cache-dir ".[celery]" -c requirements/constraints-3.11.txt \
    && rm -rf include build

# Then the package itself. pip check: the pins must not have broken a provider the base
# image ships (the FAB auth manager among them).
COPY --chown=airflow:0 include/yieldops include/yieldops
RUN pip install --no-cache-dir --no-deps --force-reinstall ".[celery]" -c requirements/constraints-3.11.txt \
    && rm -rf build \
    && pip check

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/config/ /opt/airflow/include/config/

# Last, so a new commit rebuilds nothing above. MLflow runs record it (git_revision()).
ARG YIELDOPS_GIT_COMMIT=unknown
ENV YIELDOPS_CONFIG_DIR=/opt/airflow/include/config \
    YIELDOPS_GIT_COMMIT=${YIELDOPS_GIT_COMMIT}

WORKDIR /opt/airflow
