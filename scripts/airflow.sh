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
# Airflow's database, logs and generated passwords are its owner's alone (task logs name feeds,
# builds and alerts; the database holds connections): a private umask, and Airflow's own log modes
umask 077
export AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS="${AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS:-0o700}"
export AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS="${AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS:-0o600}"
mkdir -p "$AIRFLOW_HOME"
chmod -R go-rwx "$AIRFLOW_HOME"       # an older home (before this rule) included
exec airflow "$@"
