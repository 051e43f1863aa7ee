#!/usr/bin/env bash
# Throwaway PostgreSQL, MLflow tracking server and Redis (Celery broker) for CI and for trying
# the deployment on one machine.
#
#   bash deploy/ci/services.sh start    # install PostgreSQL/Redis if missing, start all, print env
#   bash deploy/ci/services.sh env      # the environment variables a deployment needs
#   bash deploy/ci/services.sh status
#   bash deploy/ci/services.sh stop     # stop all (data stays in the state folder)
#   bash deploy/ci/services.sh purge    # stop all and delete the state folder
#
# Idempotent: `start` on a running set only checks it. Everything binds to 127.0.0.1.
# PostgreSQL runs as the `postgres` system user when called as root (it refuses root), else as
# the calling user; the cluster lives in the state folder, never in /var/lib/postgresql.
#
# Settings (environment):
#   LEAD_SERVICES_DIR    state folder (data, logs, pids)      default /tmp/lead_assets_services
#   LEAD_PG_PORT         PostgreSQL port on 127.0.0.1          default 55432
#   LEAD_MLFLOW_PORT     MLflow server port on 127.0.0.1       default 55500
#   LEAD_REDIS_PORT      Redis port on 127.0.0.1               default 56379
#   LEAD_SERVICES        which to start                        default "postgres mlflow redis"
#                        (mlflow needs postgres)
#   DAGSTER_PG_PASSWORD  password of role `dagster`            default dagster_ci
#   MLFLOW_PG_PASSWORD   password of role `mlflow`             default mlflow_ci
#   REDIS_PASSWORD       Redis password (requirepass)          default redis_ci
#   LEAD_PG_DURABLE      1 keeps fsync on (default 0: a throwaway cluster, fsync off)
#   LEAD_SERVICES_WAIT   seconds to wait for each server        default 120
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${LEAD_SERVICES_DIR:-/tmp/lead_assets_services}"
PG_PORT="${LEAD_PG_PORT:-55432}"
MLFLOW_PORT="${LEAD_MLFLOW_PORT:-55500}"
REDIS_PORT="${LEAD_REDIS_PORT:-56379}"
REDIS_PW="${REDIS_PASSWORD:-redis_ci}"
SERVICES="${LEAD_SERVICES:-postgres mlflow redis}"
DAGSTER_PW="${DAGSTER_PG_PASSWORD:-dagster_ci}"
MLFLOW_PW="${MLFLOW_PG_PASSWORD:-mlflow_ci}"
WAIT="${LEAD_SERVICES_WAIT:-120}"
PGDATA="$STATE/pgdata"
PGSOCK="$STATE/pgsock"
PGLOG="$STATE/postgres.log"
MLFLOW_LOG="$STATE/mlflow.log"
MLFLOW_PID="$STATE/mlflow.pid"
REDIS_PID="$STATE/redis.pid"
REDIS_LOG="$STATE/redis.log"
PYTHON="${LEAD_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"

log() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

pg_bin_dir() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [[ -n "$dir" && -x "$dir/pg_ctl" ]] && echo "$dir"
}

install_postgres() {
    [[ -n "$(pg_bin_dir)" ]] && return 0
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and this is not root: run 'sudo apt-get install -y postgresql'"
    log "installing PostgreSQL from Debian's packages (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # No default cluster on 5432: this script makes its own, in the state folder.
    apt-get install -y -qq postgresql-common >&2
    if [[ -f /etc/postgresql-common/createcluster.conf ]]; then
        sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
    fi
    apt-get install -y -qq postgresql >&2
    [[ -n "$(pg_bin_dir)" ]] || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/pg_ctl was found"
}

# Run a PostgreSQL program as the cluster owner.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_running() {
    local bin; bin="$(pg_bin_dir)" || return 1
    [[ -f "$PGDATA/PG_VERSION" ]] && as_owner "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

psql_admin() {
    local bin; bin="$(pg_bin_dir)"
    as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -p "$PG_PORT" -U postgres -d postgres "$@"
}

start_postgres() {
    install_postgres
    local bin; bin="$(pg_bin_dir)"
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    if [[ "$(id -u)" == 0 ]]; then
        # the postgres user must be able to reach the state folder
        local d="$STATE"
        while [[ "$d" != "/" ]]; do
            [[ -x "$d" ]] || die "$d is not searchable; choose LEAD_SERVICES_DIR elsewhere"
            if [[ "$(stat -c %U "$d")" == root && "$(( 0$(stat -c %a "$d") & 1 ))" == 0 ]]; then
                die "$d (mode $(stat -c %a "$d")) is not searchable by the postgres user; choose LEAD_SERVICES_DIR elsewhere"
            fi
            d="$(dirname "$d")"
        done
        install -d -o postgres -g postgres -m 700 "$PGDATA"
        install -d -o postgres -g postgres -m 755 "$PGSOCK"
        touch "$PGLOG" && chown postgres:postgres "$PGLOG"
    else
        install -d -m 700 "$PGDATA"
        install -d -m 755 "$PGSOCK"
    fi
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        log "initdb $PGDATA"
        as_owner "$bin/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C \
            --auth-local=trust --auth-host=scram-sha-256 >"$STATE/initdb.log" 2>&1 \
            || { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
    fi
    if pg_running; then
        log "PostgreSQL already running ($PGDATA)"
    else
        local opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PGSOCK -c max_connections=200"
        [[ "${LEAD_PG_DURABLE:-0}" == 1 ]] || opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        if ! as_owner "$bin/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t "$WAIT" -o "$opts" start >/dev/null; then
            tail -n 30 "$PGLOG" >&2 || true
            die "PostgreSQL did not start within ${WAIT}s on 127.0.0.1:$PG_PORT (log: $PGLOG)"
        fi
    fi
    # roles and databases: created once, passwords (re)set every start
    psql_admin <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dagster') THEN CREATE ROLE dagster LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow') THEN CREATE ROLE mlflow LOGIN; END IF;
END \$\$;
ALTER ROLE dagster WITH LOGIN CREATEDB PASSWORD '$DAGSTER_PW';
ALTER ROLE mlflow WITH LOGIN PASSWORD '$MLFLOW_PW';
SQL
    local db owner
    for pair in dagster:dagster mlflow:mlflow; do
        db="${pair%%:*}"; owner="${pair##*:}"
        if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]]; then
            psql_admin -c "CREATE DATABASE $db OWNER $owner"
        fi
    done
}

mlflow_healthy() {
    "$PYTHON" - "$MLFLOW_PORT" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=3) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

mlflow_alive() {
    [[ -f "$MLFLOW_PID" ]] && kill -0 "$(cat "$MLFLOW_PID")" 2>/dev/null
}

start_mlflow() {
    if mlflow_alive && mlflow_healthy; then
        log "MLflow server already running (pid $(cat "$MLFLOW_PID"))"
        return 0
    fi
    mlflow_alive && stop_mlflow
    if "$PYTHON" - "$MLFLOW_PORT" <<'PY'; then
import socket, sys
s = socket.socket()
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
        die "port 127.0.0.1:$MLFLOW_PORT is taken by another process; set LEAD_MLFLOW_PORT"
    fi
    log "starting MLflow server on 127.0.0.1:$MLFLOW_PORT (backend: postgres, artifacts: $STATE/mlartifacts)"
    # setsid: its own process group, so `stop` ends the server and all of its workers.
    MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://mlflow:$MLFLOW_PW@127.0.0.1:$PG_PORT/mlflow" \
    MLFLOW_ARTIFACTS_DESTINATION="$STATE/mlartifacts" \
    MLFLOW_SERVER_HOST=127.0.0.1 MLFLOW_SERVER_PORT="$MLFLOW_PORT" MLFLOW_SERVER_WORKERS="${MLFLOW_SERVER_WORKERS:-1}" \
    MLFLOW_SERVER_AUTH="${MLFLOW_SERVER_AUTH:-none}" \
        setsid bash "$ROOT/deploy/bin/mlflow-server.sh" >"$MLFLOW_LOG" 2>&1 < /dev/null &
    echo $! >"$MLFLOW_PID"
    local deadline=$((SECONDS + WAIT))
    until mlflow_healthy; do
        if ! mlflow_alive; then
            tail -n 40 "$MLFLOW_LOG" >&2 || true
            die "MLflow server exited during start-up (log: $MLFLOW_LOG)"
        fi
        if (( SECONDS > deadline )); then
            tail -n 40 "$MLFLOW_LOG" >&2 || true
            stop_mlflow
            die "MLflow server did not answer /health within ${WAIT}s (log: $MLFLOW_LOG)"
        fi
        sleep 1
    done
}

stop_mlflow() {
    [[ -f "$MLFLOW_PID" ]] || return 0
    local pid; pid="$(cat "$MLFLOW_PID")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$MLFLOW_PID"
}

stop_postgres() {
    local bin; bin="$(pg_bin_dir)" || return 0
    if pg_running; then
        as_owner "$bin/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null || true
    fi
}

wants() { [[ " $SERVICES " == *" $1 "* ]]; }

install_redis() {
    command -v redis-server >/dev/null 2>&1 && return 0
    [[ "$(id -u)" == 0 ]] || die "redis-server is not installed and this is not root: run 'sudo apt-get install -y redis-server'"
    log "installing Redis from Debian's packages (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends redis-server >&2
    command -v redis-server >/dev/null 2>&1 || die "apt-get installed redis-server but it is not on PATH"
}

redis_ping() {
    [[ "$(REDISCLI_AUTH="$REDIS_PW" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

start_redis() {
    install_redis
    mkdir -p "$STATE/redis"
    if redis_ping; then
        log "Redis already running on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    # A broker, not a store: no snapshots, no append-only file.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --requirepass "$REDIS_PW" \
        --daemonize yes --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$STATE/redis" \
        --save '' --appendonly no >/dev/null
    local deadline=$((SECONDS + WAIT))
    until redis_ping; do
        if (( SECONDS > deadline )); then
            tail -n 20 "$REDIS_LOG" >&2 || true
            die "Redis did not answer PING within ${WAIT}s on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"
        fi
        sleep 0.2
    done
}

stop_redis() {
    if redis_ping; then
        REDISCLI_AUTH="$REDIS_PW" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [[ -f "$REDIS_PID" ]]; then
        local pid; pid="$(cat "$REDIS_PID")"
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$REDIS_PID"
    fi
}

print_env() {
    cat <<ENV
export DAGSTER_PG_HOST=127.0.0.1
export DAGSTER_PG_PORT=$PG_PORT
export DAGSTER_PG_USER=dagster
export DAGSTER_PG_PASSWORD=$DAGSTER_PW
export DAGSTER_PG_DB=dagster
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export DAGSTER_CELERY_BROKER_URL=redis://:$REDIS_PW@127.0.0.1:$REDIS_PORT/0
export DAGSTER_CELERY_BACKEND_URL=redis://:$REDIS_PW@127.0.0.1:$REDIS_PORT/1
ENV
}

case "${1:-}" in
    start)
        if wants mlflow && ! wants postgres; then die "mlflow needs postgres: LEAD_SERVICES='postgres mlflow ...'"; fi
        if wants postgres; then start_postgres; fi
        if wants mlflow; then start_mlflow; fi
        if wants redis; then start_redis; fi
        log "ready: $SERVICES (PostgreSQL 127.0.0.1:$PG_PORT, MLflow http://127.0.0.1:$MLFLOW_PORT, Redis 127.0.0.1:$REDIS_PORT)"
        print_env
        ;;
    stop)
        stop_mlflow
        stop_redis
        stop_postgres
        ;;
    purge)
        stop_mlflow
        stop_redis
        stop_postgres
        rm -rf "$STATE"
        ;;
    status)
        if pg_running; then echo "postgres: running on 127.0.0.1:$PG_PORT ($PGDATA)"; else echo "postgres: stopped"; fi
        if mlflow_alive && mlflow_healthy; then echo "mlflow: running on http://127.0.0.1:$MLFLOW_PORT"; else echo "mlflow: stopped"; fi
        if redis_ping; then echo "redis: running on 127.0.0.1:$REDIS_PORT"; else echo "redis: stopped"; fi
        ;;
    env)
        print_env
        ;;
    *)
        echo "usage: $0 start|stop|purge|status|env" >&2
        exit 2
        ;;
esac
