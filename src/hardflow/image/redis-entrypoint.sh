#!/usr/bin/bash
# Entrypoint of the hardflow Redis image (bash builtins only: the image has no coreutils).
#
# Writes the configuration to /tmp (mode 0600; the root file system is read-only): the password
# from REDIS_PASSWORD_FILE, the data directory (the /data volume) and the append-only file, then
# execs redis-server with it and the container's arguments.
set -euo pipefail

log() { printf 'hardflow-redis: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ ${1:-} == /* || ${1:-} == bash ]]; then
    exec "$@"
fi

data=${REDIS_DATA_DIR:-/data}
# Redis would only fail at its first save; a volume made by an earlier image (uid 999) is the
# likely cause, so say so at start.
[[ -w $data ]] || die "the data directory $data is not writable by uid $UID, the user this image \
runs as; a volume made by an earlier hardflow Redis image (uid 999) must be handed over first, \
e.g. with 'chown -R $UID:$UID' on the volume (podman unshare chown for rootless podman)"
conf=/tmp/hardflow-redis.conf
umask 077
{
    printf '%s\n' "port ${REDIS_PORT:-6379}" "dir $data" \
        "appendonly yes" "save 60 1000" "daemonize no" "logfile \"\""
    if [[ -n ${REDIS_PASSWORD_FILE:-} ]]; then
        [[ -r $REDIS_PASSWORD_FILE ]] || die "REDIS_PASSWORD_FILE=$REDIS_PASSWORD_FILE is not readable by uid $UID"
        IFS= read -r password < "$REDIS_PASSWORD_FILE" || [[ -n ${password:-} ]]
        [[ -n ${password:-} ]] || die "REDIS_PASSWORD_FILE=$REDIS_PASSWORD_FILE is empty"
        [[ $password != *[\"\\[:space:]]* ]] || die "the Redis password must not hold quotes, backslashes or spaces"
        printf '%s\n' "bind * -::*" "protected-mode no" "requirepass \"$password\""
        unset password
    elif [[ ${REDIS_ALLOW_EMPTY_PASSWORD:-} == yes ]]; then
        # the official Airflow docker-compose.yaml's broker has no password (a local setup)
        log "warning: REDIS_ALLOW_EMPTY_PASSWORD=yes: any client on the network, no password"
        printf '%s\n' "bind * -::*" "protected-mode no"
    else
        log "warning: REDIS_PASSWORD_FILE is not set: protected mode, loopback clients only"
        printf '%s\n' "bind 127.0.0.1 -::1" "protected-mode yes"
    fi
} > "$conf"
exec /usr/bin/redis-server "$conf" "$@"
