#!/usr/bin/env bash
# Make rootful podman work on a fresh Debian 12 machine without systemd as PID 1.
#
# Idempotent: safe to run again; it installs only what is missing and rewrites
# /etc/containers/containers.conf with the same content for the same host.
#
# What this host needs (checked on the project's machines):
#   - podman + runc + conmon + netavark (Debian's podman pulls them in);
#   - cgroup_manager = "cgroupfs": there is no systemd to ask for cgroups;
#   - events_logger = "file" when journald is absent;
#   - default_ulimits at or below the host's hard limits: podman's rootful default
#     (nofile 1048576) is above them, and runc then fails with
#     "error setting rlimit type 7: operation not permitted" (type 6 for nproc).
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "podman-setup: must run as root" >&2
    exit 1
fi

packages=(podman runc conmon uidmap slirp4netns fuse-overlayfs netavark aardvark-dns
          containernetworking-plugins catatonit busybox-static)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "podman-setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Limits: stay at or below the hard limits this shell was given (a value of
# "unlimited" means no ceiling; use podman's own default ceiling then).
cap_limit() {
    local hard=$1 fallback=$2
    if [[ $hard == unlimited ]] || ((hard > fallback)); then
        echo "$fallback"
    else
        echo "$hard"
    fi
}
# podman itself lowers its own RLIMIT_NPROC to 32768 (kernel.pid_max here) before it
# starts conmon/runc, so a container's nproc must not exceed that either.
pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
nofile=$(cap_limit "$(ulimit -Hn)" 1048576)
nproc=$(cap_limit "$(ulimit -Hu)" "$(cap_limit "$pid_max" 32768)")

events_logger=file
if [[ -S /run/systemd/journal/socket ]]; then
    events_logger=journald
fi
cgroup_manager=cgroupfs
if [[ -d /run/systemd/system ]] && [[ $(cat /proc/1/comm 2>/dev/null) == systemd ]]; then
    cgroup_manager=systemd
fi

mkdir -p /etc/containers
conf=/etc/containers/containers.conf
tmp=$(mktemp "${conf}.XXXXXX")
cat >"$tmp" <<EOF
# Written by hardflow's .ci/podman-setup.sh; rerun it to regenerate.
[containers]
default_ulimits = [
  "nofile=${nofile}:${nofile}",
  "nproc=${nproc}:${nproc}",
]

[engine]
cgroup_manager = "${cgroup_manager}"
events_logger = "${events_logger}"
runtime = "runc"
EOF
chmod 0644 "$tmp"
mv -f "$tmp" "$conf"
echo "podman-setup: wrote $conf (nofile=$nofile nproc=$nproc cgroup_manager=$cgroup_manager events_logger=$events_logger)"

# Smoke check: the engine answers and a container really starts.
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}' >/dev/null
if ! podman image exists localhost/hf-busybox:setup; then
    work=$(mktemp -d)
    mkdir -p "$work/rootfs/bin"
    cp /bin/busybox "$work/rootfs/bin/busybox"
    tar -C "$work/rootfs" --owner=0 --group=0 --numeric-owner -cf "$work/rootfs.tar" .
    podman import -q "$work/rootfs.tar" localhost/hf-busybox:setup >/dev/null
    rm -rf "$work"
fi
out=$(podman run --rm --read-only --cap-drop=ALL --security-opt no-new-privileges \
    localhost/hf-busybox:setup /bin/busybox echo hardflow-podman-ok)
if [[ $out != hardflow-podman-ok ]]; then
    echo "podman-setup: smoke container printed '$out'" >&2
    exit 1
fi
echo "podman-setup: podman runs containers"
