#!/usr/bin/bash
# Entrypoint of the hardflow PostgreSQL image (bash builtins only: the image has no coreutils).
#
# On an empty data directory: initdb (superuser POSTGRES_USER, password from
# POSTGRES_PASSWORD_FILE, or from POSTGRES_PASSWORD as the official image reads it, scram-sha-256
# for every connection, UTF-8 with the C locale), allow password logins from the container
# network, create POSTGRES_DB. Then exec postgres with the settings a read-only root needs
# (socket in /tmp) plus the container's arguments.
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
    if [[ -z $pwfile && -n ${POSTGRES_PASSWORD:-} ]]; then
        # The official postgres image's variable, which the official Airflow docker-compose.yaml
        # sets: accepted for that file's sake (a secret in the environment shows to anyone who
        # can inspect the container; prefer POSTGRES_PASSWORD_FILE). initdb reads it on stdin.
        log "warning: the password comes from POSTGRES_PASSWORD; prefer POSTGRES_PASSWORD_FILE"
        pwfile=/dev/stdin
    fi
    [[ -n $pwfile ]] || die "the data directory $PGDATA is empty and POSTGRES_PASSWORD_FILE is not set"
    [[ $pwfile == /dev/stdin || -r $pwfile ]] || die "POSTGRES_PASSWORD_FILE=$pwfile is not readable by uid $UID"
    name_ok "$POSTGRES_USER" || die "POSTGRES_USER must match [a-z_][a-z0-9_]*, found '$POSTGRES_USER'"
    name_ok "$POSTGRES_DB" || die "POSTGRES_DB must match [a-z_][a-z0-9_]*, found '$POSTGRES_DB'"
    log "initialising a new cluster in $PGDATA"
    umask 077
    "$PGBIN/initdb" --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 --no-locale \
        --no-instructions >&2 <<< "${POSTGRES_PASSWORD:-}"
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

# PostgreSQL refuses a data directory owned by another user; say why and what to do, since a
# volume initialised by an earlier image (uid 999) no longer matches the image's user.
if [[ -e $PGDATA && ! -O $PGDATA ]]; then
    die "$PGDATA is not owned by uid $UID, the user this image runs as; a data directory made by \
an earlier hardflow PostgreSQL image (uid 999) must be handed over first, e.g. with \
'chown -R $UID:$UID' on the volume (podman unshare chown for rootless podman)"
fi
if [[ ! -s $PGDATA/PG_VERSION ]]; then
    init_cluster
fi
unset POSTGRES_PASSWORD  # the server never needs it
exec "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp \
    -c jit=off "$@"
