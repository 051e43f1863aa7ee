#!/usr/bin/env bash
# The shared MLflow tracking server: PostgreSQL backend store, artifacts proxied by the server.
#
# Clients (Dagster runs, notebooks, `lead-assets model ...`) need only MLFLOW_TRACKING_URI:
# artifacts are uploaded to and downloaded from the server (mlflow-artifacts:/ URIs), which
# writes them to MLFLOW_ARTIFACTS_DESTINATION (a local folder, s3://bucket/prefix, gs://...).
# Only this process needs object-storage credentials (AWS_*/GOOGLE_APPLICATION_CREDENTIALS).
#
# Environment (every endpoint and secret comes from here):
#   MLFLOW_BACKEND_STORE_URI       required, e.g. postgresql+psycopg2://mlflow:$PW@db.internal:5432/mlflow
#                                  (name the driver: SQLAlchemy 2.1 defaults to psycopg 3)
#   MLFLOW_ARTIFACTS_DESTINATION   required, e.g. s3://acme-mlflow/artifacts or /srv/mlflow/artifacts
#   MLFLOW_SERVER_HOST             default 127.0.0.1 (0.0.0.0 behind a firewall / in a pod)
#   MLFLOW_SERVER_PORT             default 5000
#   MLFLOW_SERVER_WORKERS          default 2
#   MLFLOW_SERVER_ALLOWED_HOSTS    Host headers to accept (default: MLflow's own: localhost
#                                  and private addresses); set it to the server's DNS name
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION  default false: MLflow 3's background job runner (GenAI
#                                  jobs, one huey consumer process per job type) is not needed for
#                                  tracking and the model registry; true turns it back on
#   MLFLOW_BIN                     default: mlflow next to this repo's .venv, else on PATH
set -euo pipefail

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql+psycopg2://user:password@host:port/db)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (s3://bucket/prefix or a folder)}"
HOST="${MLFLOW_SERVER_HOST:-127.0.0.1}"
PORT="${MLFLOW_SERVER_PORT:-5000}"
WORKERS="${MLFLOW_SERVER_WORKERS:-2}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MLFLOW_BIN="${MLFLOW_BIN:-}"
if [[ -z "$MLFLOW_BIN" ]]; then
    if [[ -x "$ROOT/.venv/bin/mlflow" ]]; then MLFLOW_BIN="$ROOT/.venv/bin/mlflow"; else MLFLOW_BIN="$(command -v mlflow)"; fi
fi

case "$MLFLOW_ARTIFACTS_DESTINATION" in
    *://*) ;;
    *) mkdir -p "$MLFLOW_ARTIFACTS_DESTINATION" ;;
esac

args=(server
      --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"
      --serve-artifacts --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"
      --host "$HOST" --port "$PORT" --workers "$WORKERS")
if [[ -n "${MLFLOW_SERVER_ALLOWED_HOSTS:-}" ]]; then
    args+=(--allowed-hosts "$MLFLOW_SERVER_ALLOWED_HOSTS")
fi
exec "$MLFLOW_BIN" "${args[@]}"
