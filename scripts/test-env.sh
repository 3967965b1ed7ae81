#!/usr/bin/env bash
# Brings up what Ferry's integration tests run against, on a Debian host:
#   - Debian packages: docker.io, docker-registry, busybox-static, iproute2,
#     sqlite3, openssl, curl, procps, docker-compose (the peer of the compose
#     equivalence test), postgresql, systemd and util-linux (systemd-analyze and
#     the private systemd the service tests boot), chromium (the console's
#     browser tests); installed only when missing;
#   - a Docker engine (dockerd started by hand when `docker info` does not
#     answer: CI machines and sandboxes have no systemd);
#   - a local registry on 127.0.0.1:5000 (Debian's docker-registry with a
#     config written here) when nothing answers on http://127.0.0.1:5000/v2/;
#   - a PostgreSQL 15 server on 127.0.0.1:55432 (Debian's postgresql, a cluster
#     of its own made with initdb and started with pg_ctl as the postgres user,
#     trust authentication on loopback only) for the store tests on PostgreSQL.
# Safe to run again and again: whatever already works is left alone.
#
#   bash scripts/test-env.sh          install + start (prints what it did)
#   bash scripts/test-env.sh stop     stop the dockerd / registry this script started
#   bash scripts/test-env.sh status   say what answers
#
# Environment:
#   FERRY_DOCKERD_FLAGS        extra flags for dockerd (e.g. "--storage-driver=vfs")
#   FERRY_TEST_ENV_FORCE_APT=1 run apt-get update/install even if nothing is missing
set -euo pipefail

PACKAGES=(docker.io docker-registry docker-compose busybox-static iproute2 sqlite3 openssl postgresql
  # and what this script and the tests use around them (minimal images lack some)
  ca-certificates curl procps cgroupfs-mount
  # the service tests: systemd-analyze, and a systemd booted in namespaces (unshare, nsenter)
  systemd util-linux)
# the console's browser tests: Debian's headless Chromium, driven by playwright-core (no browser download)
PACKAGES+=(chromium)
RUN_DIR=/run/ferry-test-env
DOCKERD_LOG=/var/log/ferry-dockerd.log
REGISTRY_DIR=/var/lib/ferry-test-registry
REGISTRY_LOG=/var/log/ferry-test-registry.log
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_URL=http://$REGISTRY_ADDR/v2/
WAIT_SECONDS=${FERRY_TEST_ENV_WAIT_SECONDS:-60}
PG_DIR=/var/lib/ferry-test-pg
PG_LOG=/var/log/ferry-test-pg.log
PG_PORT=55432
PG_BIN=

say() { printf 'test-env: %s\n' "$*"; }
die() { printf 'test-env: ERROR: %s\n' "$*" >&2; exit 1; }

# Root for what needs root: directly, or through passwordless sudo.
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=(sudo -n); fi
fi
as_root() {
  if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
    die "needs root for: $* (run as root, or give this user passwordless sudo)"
  fi
  "${SUDO[@]}" "$@"
}

docker_answers() { command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; }
# Prints the HTTP status of the registry's /v2/ endpoint, or 000 when nothing answers.
registry_status() {
  if command -v curl >/dev/null; then
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$REGISTRY_URL" 2>/dev/null || true
  else
    # bash's /dev/tcp: enough to read the status line without curl.
    (exec 3<>"/dev/tcp/${REGISTRY_ADDR%:*}/${REGISTRY_ADDR#*:}" && printf 'GET /v2/ HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3 | cut -c10-12) 2>/dev/null || true
  fi
}
registry_ok() { [ "$(registry_status)" = 200 ]; }

# ---- packages ---------------------------------------------------------------

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" in
      *'install ok installed'*) ;;
      *) printf '%s ' "$p" ;;
    esac
  done
}

install_packages() {
  command -v dpkg-query >/dev/null || die "not a Debian-like host (no dpkg-query); install ${PACKAGES[*]} by hand"
  local missing
  missing=$(missing_packages)
  if [ -z "$missing" ] && [ "${FERRY_TEST_ENV_FORCE_APT:-}" != 1 ]; then
    say "packages: all present (${PACKAGES[*]})"
    return
  fi
  say "packages: installing ${missing:-${PACKAGES[*]} (forced)}"
  local i
  for i in 1 2 3; do
    as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get update -q && break
    [ "$i" = 3 ] && die "apt-get update failed three times"
    sleep $((i * 5))
  done
  as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${PACKAGES[@]}" </dev/null
  missing=$(missing_packages)
  [ -z "$missing" ] || die "still missing after apt-get install: $missing"
}

# ---- dockerd ----------------------------------------------------------------

# dockerd needs cgroup controllers mounted; an init system normally does it.
ensure_cgroups() {
  if [ -e /sys/fs/cgroup/cgroup.controllers ] || [ -d /sys/fs/cgroup/memory ] || [ -d /sys/fs/cgroup/cpu ]; then return; fi
  say "cgroups: none mounted, mounting"
  if command -v cgroupfs-mount >/dev/null; then
    as_root cgroupfs-mount || true
  else
    as_root mount -t cgroup2 none /sys/fs/cgroup || true
  fi
}

# Starts dockerd with the given extra flags; returns 0 once `docker info` answers,
# 1 if dockerd exited, 2 on timeout (dockerd left running).
try_dockerd() {
  local pid i
  as_root mkdir -p "$RUN_DIR"
  say "dockerd: starting${*:+ with $*} (log $DOCKERD_LOG)"
  # setsid + redirects: the daemon outlives this script and holds no pipe of
  # the caller's (CI would otherwise wait for it to close stdout).
  as_root setsid -f sh -c 'echo "--- $(date -u +%FT%TZ) dockerd $*" >>"$0"; exec dockerd "$@" >>"$0" 2>&1 </dev/null' "$DOCKERD_LOG" "$@"
  for i in $(seq 1 $((WAIT_SECONDS * 2))); do
    if docker_answers; then return 0; fi
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    # dockerd writes its pid file early; give it a few seconds, then ask whether it still runs.
    if [ "$i" -gt 6 ] && { [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; } && ! pgrep -x dockerd >/dev/null; then return 1; fi
    sleep 0.5
  done
  return 2
}

# What dockerd logged since this script last started it.
last_start_log() { sed -n '/^--- .* dockerd/h; /^--- .* dockerd/!H; ${x;p}' "$DOCKERD_LOG" 2>/dev/null || true; }
# Whether that mentions a pattern (grep without -q: no SIGPIPE under pipefail).
log_mentions() { last_start_log | grep -iE "$1" >/dev/null; }

start_dockerd() {
  if docker_answers; then
    say "dockerd: already answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null), storage $(docker info --format '{{.Driver}}' 2>/dev/null))"
    return
  fi
  command -v dockerd >/dev/null || die "dockerd not found; is docker.io installed?"
  if pgrep -x dockerd >/dev/null; then
    die "a dockerd process runs but \`docker info\` does not answer (DOCKER_HOST=${DOCKER_HOST:-unset}); see $DOCKERD_LOG or stop it"
  fi
  ensure_cgroups
  # Leftover pid file from a killed dockerd makes the next one refuse to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then as_root rm -f /var/run/docker.pid; fi
  local flags rc=0
  read -r -a flags <<<"${FERRY_DOCKERD_FLAGS:-}"
  try_dockerd "${flags[@]}" || rc=$?
  if [ "$rc" = 1 ] && log_mentions 'iptables|nat chain|nf_tables'; then
    # Sandboxes without netfilter: no NAT, published ports still work through docker-proxy.
    say "dockerd: exited over iptables; retrying with --iptables=false --ip-masq=false"
    flags+=(--iptables=false --ip-masq=false)
    rc=0
    try_dockerd "${flags[@]}" || rc=$?
  fi
  if [ "$rc" = 1 ] && log_mentions 'error initializing graphdriver|driver not supported|overlay.*(not supported|failed|invalid)'; then
    say "dockerd: exited over the storage driver; retrying with --storage-driver=vfs"
    flags+=(--storage-driver=vfs)
    rc=0
    try_dockerd "${flags[@]}" || rc=$?
  fi
  if [ "$rc" != 0 ]; then
    printf '%s\n' "--- last lines of $DOCKERD_LOG ---" >&2
    last_start_log | tail -n 30 >&2
    if [ "$rc" = 1 ]; then die "dockerd exited before answering"; else die "dockerd did not answer \`docker info\` within ${WAIT_SECONDS}s"; fi
  fi
  as_root sh -c "echo '${flags[*]}' >'$RUN_DIR/dockerd.started'"
  say "dockerd: up ($(docker version --format '{{.Server.Version}}'), storage $(docker info --format '{{.Driver}}'), pid $(cat /var/run/docker.pid))"
}

# ---- registry ---------------------------------------------------------------

write_registry_config() {
  as_root mkdir -p "$REGISTRY_DIR/data" "$RUN_DIR"
  as_root tee "$REGISTRY_DIR/config.yml" >/dev/null <<EOF
# Written by scripts/test-env.sh: a plain, unauthenticated registry for tests.
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
}

start_registry() {
  local status
  status=$(registry_status)
  if [ "$status" = 200 ]; then
    say "registry: already answering on $REGISTRY_URL"
    return
  fi
  # Debian's packaged service (started by apt where no policy-rc.d forbids it)
  # listens on :5000 with htpasswd auth; ours replaces it.
  if [ "$status" != 000 ] && [ -f /var/run/docker-registry.pid ] && kill -0 "$(cat /var/run/docker-registry.pid)" 2>/dev/null; then
    say "registry: stopping Debian's docker-registry service (it requires auth)"
    as_root /etc/init.d/docker-registry stop || true
    sleep 1
    status=$(registry_status)
  fi
  if [ "$status" != 000 ] && [ -n "$status" ]; then
    die "something else answers on $REGISTRY_URL (HTTP $status; Debian's own docker-registry service requires auth). Stop it (e.g. /etc/init.d/docker-registry stop) and run again"
  fi
  command -v docker-registry >/dev/null || die "docker-registry not found; is the docker-registry package installed?"
  write_registry_config
  say "registry: starting on $REGISTRY_ADDR (storage $REGISTRY_DIR/data, log $REGISTRY_LOG)"
  as_root setsid -f sh -c 'echo $$ >"$1"; exec docker-registry serve "$2" >>"$0" 2>&1 </dev/null' \
    "$REGISTRY_LOG" "$RUN_DIR/registry.pid" "$REGISTRY_DIR/config.yml"
  local i
  for i in $(seq 1 $((WAIT_SECONDS * 2))); do
    if registry_ok; then
      say "registry: up (pid $(cat "$RUN_DIR/registry.pid"))"
      return
    fi
    if [ "$i" -gt 4 ] && ! kill -0 "$(cat "$RUN_DIR/registry.pid" 2>/dev/null || echo 0)" 2>/dev/null; then break; fi
    sleep 0.5
  done
  printf '%s\n' "--- last lines of $REGISTRY_LOG ---" >&2
  tail -n 30 "$REGISTRY_LOG" >&2 || true
  die "registry did not answer on $REGISTRY_URL"
}

# ---- postgresql -------------------------------------------------------------

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
pg_answers() { [ -n "$PG_BIN" ] && as_root runuser -u postgres -- "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }

start_postgres() {
  PG_BIN=$(pg_bin)
  [ -n "$PG_BIN" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql; is the postgresql package installed?"
  if pg_answers; then
    say "postgres: already answering on 127.0.0.1:$PG_PORT"
    return
  fi
  if [ ! -f "$PG_DIR/PG_VERSION" ]; then
    say "postgres: initdb $PG_DIR"
    as_root mkdir -p "$PG_DIR"
    as_root chown postgres:postgres "$PG_DIR"
    as_root chmod 700 "$PG_DIR"
    as_root runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    # Loopback only, and enough connections for several hub replicas per test.
    as_root sh -c "printf '%s\n' \"listen_addresses = '127.0.0.1'\" \"port = $PG_PORT\" 'max_connections = 300' 'fsync = on' \"unix_socket_directories = '$PG_DIR'\" >>'$PG_DIR/postgresql.conf'"
  fi
  as_root touch "$PG_LOG"
  as_root chown postgres "$PG_LOG"
  say "postgres: starting on 127.0.0.1:$PG_PORT (data $PG_DIR, log $PG_LOG)"
  as_root runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_LOG" -w -t "$WAIT_SECONDS" start >/dev/null ||
    { tail -n 30 "$PG_LOG" >&2; die "postgres did not start"; }
  as_root mkdir -p "$RUN_DIR"
  as_root touch "$RUN_DIR/postgres.started"
  say "postgres: up (postgres://postgres@127.0.0.1:$PG_PORT/postgres)"
}

# ---- stop / status ----------------------------------------------------------

stop_pid() { # name pid
  local i
  kill -0 "$2" 2>/dev/null || return 0
  say "$1: stopping pid $2"
  as_root kill -TERM "$2"
  for i in $(seq 1 60); do kill -0 "$2" 2>/dev/null || return 0; sleep 0.5; done
  say "$1: still running after 30s; killing"
  as_root kill -KILL "$2" || true
}

stop_all() {
  PG_BIN=$(pg_bin)
  if [ -f "$RUN_DIR/postgres.started" ] && [ -n "$PG_BIN" ]; then
    say "postgres: stopping"
    as_root runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null || true
    as_root rm -f "$RUN_DIR/postgres.started"
  else
    say "postgres: not started by this script; left alone"
  fi
  if [ -f "$RUN_DIR/registry.pid" ]; then
    stop_pid registry "$(cat "$RUN_DIR/registry.pid")"
    as_root rm -f "$RUN_DIR/registry.pid"
  else
    say "registry: not started by this script; left alone"
  fi
  if [ -f "$RUN_DIR/dockerd.started" ] && [ -f /var/run/docker.pid ]; then
    stop_pid dockerd "$(cat /var/run/docker.pid)"
    as_root rm -f "$RUN_DIR/dockerd.started"
  else
    say "dockerd: not started by this script; left alone"
  fi
}

status() {
  if docker_answers; then say "dockerd: answering ($(docker version --format '{{.Server.Version}}'))"; else say "dockerd: not answering"; fi
  if registry_ok; then say "registry: answering on $REGISTRY_URL"; else say "registry: not answering on $REGISTRY_URL"; fi
  PG_BIN=$(pg_bin)
  if pg_answers; then say "postgres: answering on 127.0.0.1:$PG_PORT"; else say "postgres: not answering on 127.0.0.1:$PG_PORT"; fi
}

case "${1:-up}" in
  up | start)
    t0=$(date +%s)
    install_packages
    start_dockerd
    start_registry
    start_postgres
    say "ready in $(($(date +%s) - t0))s: docker $(docker version --format '{{.Server.Version}}'), registry $REGISTRY_URL, postgres 127.0.0.1:$PG_PORT"
    ;;
  stop) stop_all ;;
  status) status ;;
  *) die "usage: $0 [up|stop|status]" ;;
esac
