# shellcheck shell=bash
# Starts a gatehouse server on a fresh database for a test script, and removes everything again
# when that script exits. Meant to be sourced by a bash script running with `set -euo pipefail`:
#
#   source tests/support/server.bash
#   gh_server_start "$bin" <name> [<postgres-admin-url>]
#   ... "$bin" token create ..., requests to "$gh_url" ...
#
# gh_server_start makes a temporary directory (gh_work) holding the data directory and the server
# log (gh_log), creates a fresh database — SQLite in gh_work, or, given a PostgreSQL URL that may
# create databases, a new gh_<name>_<random> database on it, dropped afterwards — exports the
# GATEHOUSE_* configuration for it (so the CLI commands the script runs later use the same
# database), starts `<bin> serve` on a port the kernel picks and waits until it answers its
# readiness check. It sets gh_url (http://127.0.0.1:PORT) and installs EXIT/INT/TERM traps that
# stop the server, drop the database and remove gh_work. A script that has its own clean-up
# defines a function gh_cleanup_extra, which runs first.
#
# Before calling it, a script may export further GATEHOUSE_* variables for the server (every
# GATEHOUSE_* variable is configuration, and unknown keys are refused: unset GATEHOUSE_BIN and
# the like first). GH_PYTHON names the python used to build the database URL (default python3).

gh_work=""
gh_log=""
gh_url=""
gh_server_pid=""
gh_database=""
gh_admin_url=""

gh_cleanup() {
  local status=$?
  if declare -F gh_cleanup_extra >/dev/null; then
    gh_cleanup_extra || true
  fi
  if [ -n "$gh_server_pid" ] && kill -0 "$gh_server_pid" 2>/dev/null; then
    kill -TERM "$gh_server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$gh_server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$gh_server_pid" 2>/dev/null || true
    wait "$gh_server_pid" 2>/dev/null || true
  fi
  if [ -n "$gh_database" ]; then
    psql "$gh_admin_url" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$gh_database\" WITH (FORCE)" >/dev/null ||
      echo "could not drop database $gh_database" >&2
  fi
  if [ -n "$gh_work" ]; then
    rm -rf "$gh_work"
  fi
  exit "$status"
}

# Prints a message and the end of the server log, and exits 1.
gh_fail() {
  echo "$1" >&2
  if [ -n "$gh_log" ] && [ -s "$gh_log" ]; then
    echo "--- last lines of the server log ---" >&2
    tail -n 40 "$gh_log" >&2
  fi
  exit 1
}

gh_server_start() {
  local bin="$1" name="$2" admin_url="${3:-}"
  local py="${GH_PYTHON:-python3}"

  gh_work="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-$name.XXXXXX")"
  gh_log="$gh_work/server.log"
  trap gh_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  export GATEHOUSE_DATA_DIR="$gh_work/data"
  export GATEHOUSE_SERVER__LISTEN=127.0.0.1:0
  export GATEHOUSE_SERVER__METRICS_LISTEN=127.0.0.1:0
  export GATEHOUSE_SERVER__SECURE_COOKIES=false
  export GATEHOUSE_LOG__FORMAT=json
  unset GATEHOUSE_CONFIG
  mkdir -p "$GATEHOUSE_DATA_DIR"

  if [ -n "$admin_url" ]; then
    command -v psql >/dev/null || { echo "a PostgreSQL database needs psql" >&2; exit 1; }
    gh_admin_url="$admin_url"
    gh_database="gh_${name//[^a-z0-9_]/_}_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    psql "$gh_admin_url" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$gh_database\"" >/dev/null
    GATEHOUSE_DATABASE__URL="$("$py" -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$gh_admin_url" "$gh_database")"
    export GATEHOUSE_DATABASE__URL
    GATEHOUSE_SECRET_KEY="$(od -An -N48 -tx1 /dev/urandom | tr -d ' \n')"
    export GATEHOUSE_SECRET_KEY
    echo "database: PostgreSQL ($gh_database)"
  else
    echo "database: SQLite ($GATEHOUSE_DATA_DIR)"
  fi

  "$bin" serve >"$gh_log" 2>&1 &
  gh_server_pid=$!

  # The server logs the address it bound (port 0 lets the kernel pick a free one) once it is ready.
  local addr deadline=$((SECONDS + 60))
  while [ -z "$gh_url" ]; do
    kill -0 "$gh_server_pid" 2>/dev/null || gh_fail "gatehouse exited before it was ready"
    [ "$SECONDS" -lt "$deadline" ] || gh_fail "gatehouse did not log its address within 60 s"
    addr="$(sed -n 's/.*"message":"gatehouse is ready".*"addr":"\([^"]*\)".*/\1/p' "$gh_log" | head -n 1)"
    if [ -n "$addr" ]; then
      gh_url="http://$addr"
    else
      sleep 0.1
    fi
  done
  until "$bin" healthcheck --url "$gh_url" >/dev/null 2>&1; do
    kill -0 "$gh_server_pid" 2>/dev/null || gh_fail "gatehouse exited before it was ready"
    [ "$SECONDS" -lt "$deadline" ] || gh_fail "$gh_url/-/health/ready/ did not answer within 60 s"
    sleep 0.1
  done
  echo "server: $gh_url"
}
