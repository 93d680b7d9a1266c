-- The databases of the yieldops stack beside Airflow's own (POSTGRES_DB, created by the
-- image). PostgreSQL's image runs this once, on the first start with an empty data
-- volume (/docker-entrypoint-initdb.d), as POSTGRES_USER, who owns them all.
-- A database added here later needs creating by hand on an existing volume:
--   docker compose exec postgres createdb -U "$POSTGRES_USER" <name>

-- MLflow tracking server: experiments, runs and the model registry (backend store).
CREATE DATABASE mlflow;

-- yieldops: the landing ledger (YIELDOPS_LEDGER_URL) and the rollout audit log
-- (YIELDOPS_ROLLOUT_DB_URL); their tables have distinct names.
CREATE DATABASE yieldops;

-- One prediction log per gateway (YIELDOPS_GATEWAY_LOG_URL): the table has no gateway
-- column, and each rollout target reads its own gateway's rows.
CREATE DATABASE predictions_adc;
CREATE DATABASE predictions_pmic;
