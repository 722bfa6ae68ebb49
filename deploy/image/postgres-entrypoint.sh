#!/bin/sh
# Entrypoint of shipshape/postgres (Debian's PostgreSQL): initialise on first start, then serve.
# POSTGRES_PASSWORD is required and read from the environment (a Secret), never from argv.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (from a Secret)}"
user="${POSTGRES_USER:-app}"
database="${POSTGRES_DB:-app}"
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
export PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  umask 077
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  "$bin/initdb" --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=trust >/dev/null
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "CREATE DATABASE \"$database\";" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
  echo "initialised $PGDATA (user $user, database $database)"
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp
