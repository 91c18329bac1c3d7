#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them. Fails (never skips)
# when something the tests need is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in bash jq openssl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
command -v dot >/dev/null || missing+=(graphviz)
command -v node >/dev/null || missing+=(nodejs)
# libfaketime: the clock-skew tests preload it into a daemon.
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(faketime)
# PostgreSQL server + pg_partman for the throwaway test cluster (unless FLOXY_TEST_DSN is set).
if [ -z "${FLOXY_TEST_DSN:-}" ]; then
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql-15)
  compgen -G "/usr/share/postgresql/*/extension/pg_partman.control" >/dev/null \
    || missing+=(postgresql-15-partman)
fi
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing tools: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

python -m pip install -q -e '.[dev]'
exec python -m pytest "$@"
