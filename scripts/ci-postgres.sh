#!/usr/bin/env bash
# Installs what the PostgreSQL tests need: the server binaries from Debian's packages
# and the psycopg driver. Idempotent. The tests start a throwaway cluster themselves
# (tests/pgserver.py), so nothing is started here; set TWOSTEP_TEST_POSTGRES_DSN to
# use a running server instead.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci-postgres: PostgreSQL is missing and installing it needs root" >&2
    exit 1
  fi
  apt-get update -qq
  # The package's own cluster is not needed; in a container its start is refused anyway.
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
"${initdb:-initdb}" --version

# PostgreSQL refuses to run as root: the test helper then runs it as this user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "ci-postgres: running as root, and there is no postgres user" >&2
  exit 1
fi

python="${PYTHON:-python3}"
if ! "$python" -c "import psycopg, psycopg_pool" 2>/dev/null; then
  "$python" -m pip install -q 'psycopg[binary]>=3.2' 'psycopg-pool>=3.2' \
    || "$python" -m pip install -q --break-system-packages 'psycopg[binary]>=3.2' 'psycopg-pool>=3.2'
fi
"$python" -c "import psycopg, psycopg_pool; print('psycopg', psycopg.__version__, 'pool', psycopg_pool.__version__)"
