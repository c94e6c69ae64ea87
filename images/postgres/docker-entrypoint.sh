#!/bin/sh
# The official postgres image's contract, for Debian's server: on an empty data directory, create the
# cluster with POSTGRES_USER as superuser (password POSTGRES_PASSWORD, scram-sha-256 over the network)
# and the database POSTGRES_DB; at every boot, set that user's password to POSTGRES_PASSWORD; then run
# the server as user postgres, listening on the container's network.
set -eu
if [ "${1:-}" != postgres ]; then exec "$@"; fi
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /run/postgresql
  chown -R postgres:postgres "$PGDATA" /run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user="${POSTGRES_USER:-postgres}"
created=
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required on first boot}"
  pwfile="$(mktemp)"
  trap 'rm -f "$pwfile"' EXIT  # gone even when initdb fails
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  trap - EXIT
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  created=1
fi
# Unlike the official image, POSTGRES_PASSWORD is the password at every boot, not only the first: the stack
# config stays the truth when it changes (`pulumi config set --secret postgresPassword`, or a password
# generated anew after `pulumi destroy`, which keeps the data volume). psql reads it from the environment,
# never from its command line.
pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
if [ -n "${POSTGRES_PASSWORD:-}" ]; then
  psql -X -q -v ON_ERROR_STOP=1 -U "$user" -d postgres -v user="$user" >/dev/null <<'SQL'
\getenv pw POSTGRES_PASSWORD
ALTER ROLE :"user" PASSWORD :'pw';
SQL
fi
db="${POSTGRES_DB:-$user}"
if [ -n "$created" ] && [ "$db" != postgres ]; then createdb -U "$user" "$db"; fi
pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
if [ -n "$created" ]; then echo "docker-entrypoint.sh: database $db created for $user"; fi
shift
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
