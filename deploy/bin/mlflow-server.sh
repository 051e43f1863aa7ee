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
#
# Authentication (a registered model version is code that workers and the scoring service
# unpickle, so nobody unauthenticated may register one or move `champion`):
#   MLFLOW_SERVER_AUTH             default basic-auth: MLflow's own basic-auth app (`mlflow[auth]`,
#                                  the deploy extra's Flask-WTF): every request needs a user and
#                                  password, permissions per experiment and registered model.
#                                  `none` only with MLFLOW_SERVER_HOST on loopback (throwaway
#                                  servers: deploy/ci/services.sh); otherwise the script refuses.
#   MLFLOW_AUTH_CONFIG_PATH        an auth .ini of your own; unset, one is written next to the
#                                  server state (MLFLOW_AUTH_STATE_DIR) from the variables below
#   MLFLOW_AUTH_DATABASE_URI       users and permissions, e.g. postgresql+psycopg2://mlflow:$PW@db/mlflow_auth
#                                  (required when the script writes the .ini)
#   MLFLOW_AUTH_DEFAULT_PERMISSION default READ: what an authenticated user may do where nobody
#                                  granted more (READ lets run workers and the scoring service
#                                  load the champion; registering and moving aliases need EDIT)
#   MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD  the admin created on first start
#   MLFLOW_FLASK_SERVER_SECRET_KEY required by the auth app (CSRF); the same on every replica
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

AUTH="${MLFLOW_SERVER_AUTH:-basic-auth}"
case "$AUTH" in
    basic-auth)
        : "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (the CSRF secret of the auth app)}"
        if [[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
            : "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (users and permissions) or MLFLOW_AUTH_CONFIG_PATH}"
            STATE_DIR="${MLFLOW_AUTH_STATE_DIR:-${XDG_RUNTIME_DIR:-/tmp}/lead_assets_mlflow_auth}"
            mkdir -p "$STATE_DIR" && chmod 700 "$STATE_DIR"
            export MLFLOW_AUTH_CONFIG_PATH="$STATE_DIR/basic_auth.ini"
            umask 077
            cat >"$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
INI
        fi
        ;;
    none)
        case "$HOST" in
            127.0.0.1|localhost|::1) ;;
            *) echo "mlflow-server.sh: MLFLOW_SERVER_AUTH=none on $HOST: anyone who reaches the port could register a model" \
                    "version and move champion (code the workers unpickle); use basic-auth or bind 127.0.0.1" >&2
               exit 2 ;;
        esac
        ;;
    *) echo "mlflow-server.sh: MLFLOW_SERVER_AUTH must be basic-auth or none, not $AUTH" >&2; exit 2 ;;
esac

args=(server
      --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"
      --serve-artifacts --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"
      --host "$HOST" --port "$PORT" --workers "$WORKERS")
if [[ "$AUTH" == basic-auth ]]; then
    args+=(--app-name basic-auth)
fi
if [[ -n "${MLFLOW_SERVER_ALLOWED_HOSTS:-}" ]]; then
    args+=(--allowed-hosts "$MLFLOW_SERVER_ALLOWED_HOSTS")
fi
exec "$MLFLOW_BIN" "${args[@]}"
