#!/usr/bin/bash
# Entrypoint of the hardflow PostgreSQL image (bash builtins only: the image has no coreutils).
#
# On an empty data directory: initdb (superuser POSTGRES_USER, password from
# POSTGRES_PASSWORD_FILE, scram-sha-256 for every connection, UTF-8 with the C locale), allow
# password logins from the container network, create POSTGRES_DB. Then exec postgres with the
# settings a read-only root needs (socket in /tmp) plus the container's arguments.
set -euo pipefail

PGBIN=/usr/lib/postgresql/17/bin
PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
export PGDATA

log() { printf 'hardflow-postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

name_ok() { [[ $1 =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; }

init_cluster() {
    local pwfile=${POSTGRES_PASSWORD_FILE:-}
    [[ -n $pwfile ]] || die "the data directory $PGDATA is empty and POSTGRES_PASSWORD_FILE is not set"
    [[ -r $pwfile ]] || die "POSTGRES_PASSWORD_FILE=$pwfile is not readable by uid $UID"
    name_ok "$POSTGRES_USER" || die "POSTGRES_USER must match [a-z_][a-z0-9_]*, found '$POSTGRES_USER'"
    name_ok "$POSTGRES_DB" || die "POSTGRES_DB must match [a-z_][a-z0-9_]*, found '$POSTGRES_DB'"
    log "initialising a new cluster in $PGDATA"
    umask 077
    "$PGBIN/initdb" --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 --no-locale \
        --no-instructions >&2
    # initdb only lets loopback clients in; the other containers connect over the network.
    printf '%s\n' "# added by hardflow: password logins from the container network" \
        "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [[ $POSTGRES_DB != postgres ]]; then
        "$PGBIN/postgres" --single -D "$PGDATA" -c jit=off postgres >/dev/null \
            <<< "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";"
        log "created database $POSTGRES_DB"
    fi
}

if [[ ${1:-} == postgres ]]; then
    shift
elif [[ ${1:-} == /* || ${1:-} == bash ]]; then
    exec "$@"  # a command of its own (e.g. psql, pg_dump)
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    init_cluster
fi
exec "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp \
    -c jit=off "$@"
