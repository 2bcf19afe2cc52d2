#!/usr/bin/env bash
# Fail with a clear message unless Java 17 or newer is on PATH (Spark 4 needs it).
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
  echo "error: Java 17+ is required (Spark 4) but 'java' is not on PATH." >&2
  echo "       Debian/Ubuntu: apt-get install openjdk-17-jre-headless" >&2
  exit 1
fi
version=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
if [ "$major" = "1" ]; then major=$(echo "$version" | cut -d. -f2); fi
if ! [ "$major" -ge 17 ] 2>/dev/null; then
  echo "error: Java 17+ is required (Spark 4); found Java '$version'." >&2
  exit 1
fi
