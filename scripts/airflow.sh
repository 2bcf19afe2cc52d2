#!/usr/bin/env bash
# Run an Airflow command against this project: AIRFLOW_HOME under $KCURE_HOME (git-ignored var/),
# a SQLite metadata database, the project's dags/ and no example DAGs.
#   scripts/airflow.sh db migrate
#   scripts/airflow.sh dags test kcure_ingest --conf '{"landing": "..."}'
#   scripts/airflow.sh standalone
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KCURE_HOME="${KCURE_HOME:-$repo/var}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$KCURE_HOME/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$repo/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}"
export PATH="$repo/.venv/bin:$PATH"   # standalone starts its components with `airflow` from PATH
mkdir -p "$AIRFLOW_HOME"
exec airflow "$@"
