#!/usr/bin/env bash
# Prepare (or upgrade) the production Dagster instance in PostgreSQL. Safe to run again.
#
#   DAGSTER_HOME=/srv/dagster bash deploy/bin/init-instance.sh
#
# Needs the environment of deploy/dagster.yaml (DAGSTER_PG_*) and $DAGSTER_HOME/dagster.yaml.
#  1. creates or migrates the run, event-log and schedule tables (`dagster instance migrate`);
#  2. sets the pool limits the assets use (stored in the database, shared by every process):
#     lead_ingest   raw_leads rewrites every file of its days: one at a time
#     lead_scoring  scored_leads reads a day's features, then writes its scores: one at a time
#     Set them before the first runs: a pool that only has `pools.default_limit` gets its row
#     created by the first run that claims it, and two runs doing that at the same moment
#     collide (duplicate key in concurrency_limits; seen with dagster-postgres 0.29.27).
#     LEAD_ASSETS_POOL_LIMITS="name=limit ..." adds or overrides pools (e.g. lead_training=1
#     once lead_scoring_model declares that pool).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DAGSTER="${DAGSTER_BIN:-$ROOT/.venv/bin/dagster}"
[[ -x "$DAGSTER" ]] || DAGSTER="$(command -v dagster)"
: "${DAGSTER_HOME:?set DAGSTER_HOME to the folder holding the production dagster.yaml}"
[[ -f "$DAGSTER_HOME/dagster.yaml" ]] || { echo "no $DAGSTER_HOME/dagster.yaml: cp deploy/dagster.yaml \$DAGSTER_HOME/" >&2; exit 1; }

"$DAGSTER" instance migrate
for pair in lead_ingest=1 lead_scoring=1 ${LEAD_ASSETS_POOL_LIMITS:-}; do
    "$DAGSTER" instance concurrency set "${pair%%=*}" "${pair##*=}"
done
"$DAGSTER" instance concurrency get --all
