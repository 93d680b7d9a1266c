#!/bin/sh
# minio-init (docker-compose.yaml): a one-shot run with MinIO's client (mc) once MinIO
# is healthy. Idempotent, so it runs on every `docker compose up`:
#  - the landing bucket (STDF files arrive under its incoming/ prefix) and the MLflow
#    artifacts bucket;
#  - one user per client, each allowed its own bucket only: Airflow (landing zone,
#    AIRFLOW_CONN_AWS_DEFAULT) and the MLflow server (artifacts). The root credentials
#    stay with this script.
# MinIO's bucket notifications cannot target SQS, so this stack ingests with the sensor
# or the sweep (YIELDOPS_INGEST_TRIGGER); events mode needs real S3 and SQS
# (docker/compose.aws-events.yaml).
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${LANDING_BUCKET:?}" "${ARTIFACTS_BUCKET:?}"
: "${MINIO_AIRFLOW_ACCESS_KEY:?}" "${MINIO_AIRFLOW_SECRET_KEY:?}"
: "${MINIO_MLFLOW_ACCESS_KEY:?}" "${MINIO_MLFLOW_SECRET_KEY:?}"

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

# bucket_policy NAME BUCKET: read, write, list and delete in BUCKET, nothing else.
bucket_policy() {
    printf '%s\n' "{
  \"Version\": \"2012-10-17\",
  \"Statement\": [
    {\"Effect\": \"Allow\",
     \"Action\": [\"s3:GetBucketLocation\", \"s3:ListBucket\", \"s3:ListBucketMultipartUploads\"],
     \"Resource\": [\"arn:aws:s3:::$2\"]},
    {\"Effect\": \"Allow\",
     \"Action\": [\"s3:GetObject\", \"s3:PutObject\", \"s3:DeleteObject\",
                  \"s3:AbortMultipartUpload\", \"s3:ListMultipartUploadParts\"],
     \"Resource\": [\"arn:aws:s3:::$2/*\"]}
  ]
}" >"/tmp/$1.json"
    mc admin policy create local "$1" "/tmp/$1.json"
}

# bucket_user ACCESS_KEY SECRET_KEY POLICY: the user (secret updated) with POLICY attached.
bucket_user() {
    mc admin user add local "$1" "$2"
    # attach fails when the policy is attached already (a re-run): fine if it is there.
    # (Shell built-ins only: the mc image has no grep.)
    if ! mc admin policy attach local "$3" --user "$1" 2>/dev/null; then
        entities=$(mc admin policy entities local --user "$1")
        case $entities in
        *"$3"*) ;;
        *) echo "could not attach policy $3 to user $1" >&2 && exit 1 ;;
        esac
    fi
}

mc mb --ignore-existing "local/$LANDING_BUCKET"
mc mb --ignore-existing "local/$ARTIFACTS_BUCKET"
bucket_policy yieldops-landing "$LANDING_BUCKET"
bucket_policy yieldops-mlflow "$ARTIFACTS_BUCKET"
bucket_user "$MINIO_AIRFLOW_ACCESS_KEY" "$MINIO_AIRFLOW_SECRET_KEY" yieldops-landing
bucket_user "$MINIO_MLFLOW_ACCESS_KEY" "$MINIO_MLFLOW_SECRET_KEY" yieldops-mlflow
echo "buckets $LANDING_BUCKET and $ARTIFACTS_BUCKET ready; users $MINIO_AIRFLOW_ACCESS_KEY and $MINIO_MLFLOW_ACCESS_KEY"
