#!/usr/bin/bash
# Health check of the hardflow Redis image: PING over loopback, authenticated with the password
# from REDIS_PASSWORD_FILE (passed to redis-cli in its environment, never on the command line).
set -uo pipefail
if [[ -n ${REDIS_PASSWORD_FILE:-} ]]; then
    IFS= read -r REDISCLI_AUTH < "$REDIS_PASSWORD_FILE" || [[ -n ${REDISCLI_AUTH:-} ]] || exit 1
    export REDISCLI_AUTH
fi
reply=$(/usr/bin/redis-cli -h 127.0.0.1 -p "${REDIS_PORT:-6379}" ping 2>&1) || exit 1
[[ $reply == PONG ]] || { printf 'redis: %s\n' "$reply" >&2; exit 1; }
