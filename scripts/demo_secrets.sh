#!/usr/bin/env bash
# Create .demo-secrets.env (git-ignored) with THROWAWAY keys for the synthetic demo, once.
# Never use these for real data: real secrets come from the environment, an owner-only file
# (KCURE_*_SECRET_FILE) or an Airflow connection.
set -euo pipefail
f=${1:-.demo-secrets.env}
if [ ! -f "$f" ]; then
  umask 077
  {
    echo "# DEMO ONLY - throwaway keys for synthetic data, generated $(date -u +%FT%TZ). Never use for real data."
    echo "KCURE_LINKAGE_SECRET=demo-only-throwaway-linkage-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    echo "KCURE_LIBRARY_SECRET=demo-only-throwaway-library-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  } > "$f"
  echo "wrote throwaway demo secrets to $f"
fi
