#!/usr/bin/env bash
# Ferry in one command, on one machine: a hub on 127.0.0.1:7443, tenant
# `demo`, and one agent enrolled into it and connected, talking to the local
# Docker engine. Safe to run again: what exists is reused, what runs is left
# running.
#
#   bash scripts/quickstart.sh          set up (or check) everything, print where to look
#   bash scripts/quickstart.sh stop     stop the agent and the hub (state is kept)
#   bash scripts/quickstart.sh status   show what runs
#   bash scripts/quickstart.sh reset    stop, then delete ./.ferry-quickstart
#
# Environment: FERRY_QUICKSTART_DIR (default ./.ferry-quickstart),
# FERRY_QUICKSTART_LISTEN (default 127.0.0.1:7443).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QS=${FERRY_QUICKSTART_DIR:-$ROOT/.ferry-quickstart}
LISTEN=${FERRY_QUICKSTART_LISTEN:-127.0.0.1:7443}
HUB_URL=http://$LISTEN
HUB_DIR=$QS/hub
AGENT_DIR=$QS/agent
TOKEN_FILE=$QS/admin-token
TENANT=demo

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '%squickstart:%s %s\n' "$B" "$N" "$*"; }
die() { printf 'quickstart: ERROR: %s\n' "$*" >&2; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
hub_ready() { curl -fsS -m 3 -o /dev/null "$HUB_URL/readyz" 2>/dev/null; }

# Starts a command detached from this shell (survives it, holds none of its
# pipes), recording its pid and appending its output to a log file.
start_bg() { # pidfile logfile command...
  local pidfile=$1 log=$2
  shift 2
  rm -f "$pidfile"
  printf -- '--- %s %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
  setsid -f sh -c 'echo $$ >"$0"; log=$1; shift; exec "$@" >>"$log" 2>&1 </dev/null' "$pidfile" "$log" "$@"
  local i
  for i in $(seq 1 50); do [ -s "$pidfile" ] && return; sleep 0.1; done
  die "could not start $*"
}

stop_pid() { # name pidfile
  if ! alive "$2"; then
    say "$1: not running"
    rm -f "$2"
    return
  fi
  local pid i
  pid=$(cat "$2")
  say "$1: stopping (pid $pid)"
  kill -TERM "$pid"
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -f "$2"
}

# The hub API with the admin token; prints the body, fails on HTTP >= 400
# unless the status is listed in $OK_STATUS.
api() { # method path [json-body]
  local body status args=(-sS -m 10 -X "$1" -H "authorization: Bearer $(cat "$TOKEN_FILE")")
  if [ $# -ge 3 ]; then args+=(-H 'content-type: application/json' --data "$3"); fi
  body=$(mktemp)
  status=$(curl "${args[@]}" -o "$body" -w '%{http_code}' "$HUB_URL$2") || { rm -f "$body"; die "hub did not answer $1 $2"; }
  if [ "$status" -ge 400 ] && [[ " ${OK_STATUS:-} " != *" $status "* ]]; then
    cat "$body" >&2
    rm -f "$body"
    die "$1 $2 answered HTTP $status"
  fi
  cat "$body"
  rm -f "$body"
}

# Reads a field of a JSON document on stdin (no jq on a fresh machine; node is here).
json_field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=process.argv[1].split(".").reduce((o,k)=>o?.[k],JSON.parse(s));process.stdout.write(v===undefined||v===null?"":String(v))})' "$1"; }

# Whether the agent shows as connected: through the operator CLI when it is
# built (what a person would type), else straight from the API.
agent_connected() { # agent-id
  local json
  if [ -f dist/cli/main.js ] && json=$(node dist/cli/main.js --hub "$HUB_URL" --token "$(cat "$TOKEN_FILE")" agent ls --json 2>/dev/null); then
    CHECKED_WITH="ferry agent ls"
  else
    json=$(api GET /v1/agents) || return 1
    CHECKED_WITH="GET /v1/agents"
  fi
  printf '%s' "$json" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const a=JSON.parse(s).agents.find(x=>x.id===process.argv[1]);process.exit(a&&a.status==="connected"?0:1)})' "$1"
}

up() {
  local t0 i
  t0=$(date +%s)
  command -v node >/dev/null || die "node (>= 20.18) is needed; see README.md"
  mkdir -p "$QS"
  chmod 700 "$QS"

  if [ ! -d node_modules ]; then
    say "dependencies: installing (npm ci)"
    if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  fi
  say "build: npm run build"
  npm run --silent build

  say "docker: bash scripts/test-env.sh"
  bash scripts/test-env.sh | sed 's/^/  /'
  command -v curl >/dev/null || die "curl is needed (scripts/test-env.sh installs it)"

  # ---- hub
  if [ -f "$HUB_DIR/ferry-hub.db" ] && [ -s "$TOKEN_FILE" ]; then
    say "hub: using the database in $HUB_DIR"
  elif [ -f "$HUB_DIR/ferry-hub.db" ]; then
    die "$HUB_DIR holds a database but $TOKEN_FILE is missing; run \`bash scripts/quickstart.sh reset\` to start over"
  else
    say "hub: initialising $HUB_DIR"
    (umask 077 && node dist/hub/main.js init --data-dir "$HUB_DIR" --admin-name quickstart --json | json_field token >"$TOKEN_FILE.tmp")
    mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"
  fi
  if alive "$QS/hub.pid"; then
    for i in $(seq 1 100); do hub_ready && break; sleep 0.2; done
  fi
  if alive "$QS/hub.pid" && hub_ready; then
    say "hub: already serving $HUB_URL (pid $(cat "$QS/hub.pid"))"
  else
    if curl -s -m 2 -o /dev/null "$HUB_URL/livez" 2>/dev/null; then die "something else answers on $HUB_URL; stop it or set FERRY_QUICKSTART_LISTEN"; fi
    say "hub: starting on $HUB_URL (log $QS/hub.log)"
    start_bg "$QS/hub.pid" "$QS/hub.log" node "$ROOT/dist/hub/main.js" serve --data-dir "$HUB_DIR" --listen "$LISTEN"
    for i in $(seq 1 100); do hub_ready && break; alive "$QS/hub.pid" || break; sleep 0.2; done
    hub_ready || { tail -n 20 "$QS/hub.log" >&2; die "hub did not become ready; see $QS/hub.log"; }
  fi

  # ---- tenant
  local created
  created=$(OK_STATUS=409 api POST /v1/tenants "{\"name\":\"$TENANT\"}" | json_field createdAt)
  if [ -n "$created" ]; then
    say "tenant: created $TENANT"
  else
    say "tenant: $TENANT exists"
  fi

  # ---- agent
  if [ -f "$AGENT_DIR/identity.json" ]; then
    say "agent: already enrolled in $AGENT_DIR"
  else
    say "agent: creating an enrollment token and enrolling into $AGENT_DIR"
    local token
    token=$(api POST "/v1/tenants/$TENANT/enrollment-tokens" '{"ttlSeconds":600}' | json_field token)
    node dist/agent/main.js enroll --hub "$HUB_URL" --token "$token" --state-dir "$AGENT_DIR" \
      --name "quickstart-$(hostname)" --label env=demo | sed 's/^/  /'
  fi
  AGENT_ID=$(json_field agentId <"$AGENT_DIR/identity.json")
  if alive "$QS/agent.pid"; then
    say "agent: already running (pid $(cat "$QS/agent.pid"))"
  else
    say "agent: starting $AGENT_ID (log $QS/agent.log)"
    start_bg "$QS/agent.pid" "$QS/agent.log" node "$ROOT/dist/agent/main.js" run --state-dir "$AGENT_DIR"
  fi
  for i in $(seq 1 100); do
    agent_connected "$AGENT_ID" && break
    alive "$QS/agent.pid" || { tail -n 20 "$QS/agent.log" >&2; die "the agent exited; see $QS/agent.log"; }
    sleep 0.2
  done
  agent_connected "$AGENT_ID" || { tail -n 20 "$QS/agent.log" >&2; die "the agent did not connect within 20s; see $QS/agent.log"; }
  say "agent: $AGENT_ID connected (checked with $CHECKED_WITH)"

  local rel=${QS#"$ROOT"/}
  cat <<EOF

Ferry is up ($(($(date +%s) - t0))s).

  hub          $HUB_URL   (data: $rel/hub, log: $rel/hub.log)
  admin token  $rel/admin-token   (keep it private)
  tenant       $TENANT
  agent        $AGENT_ID   (state: $rel/agent, log: $rel/agent.log)
  docker       $(docker version --format '{{.Server.Version}}' 2>/dev/null), registry http://127.0.0.1:5000/v2/

Try the operator CLI:

  export FERRY_HUB=$HUB_URL FERRY_TOKEN=\$(cat $rel/admin-token)
  node dist/cli/main.js agent ls
  node dist/cli/main.js agent show $AGENT_ID
  node dist/cli/main.js tenant ls
  node dist/cli/main.js token create --tenant $TENANT      # enroll another agent with it
  node dist/agent/main.js status --state-dir $rel/agent

Follow the logs:   tail -f $rel/hub.log $rel/agent.log
Stop:              bash scripts/quickstart.sh stop     (bash scripts/test-env.sh stop stops docker and the registry)
Start over:        bash scripts/quickstart.sh reset
EOF
}

status() {
  if alive "$QS/hub.pid"; then say "hub: running (pid $(cat "$QS/hub.pid")), $(hub_ready && echo ready || echo 'not ready') on $HUB_URL"; else say "hub: not running"; fi
  if alive "$QS/agent.pid"; then say "agent: running (pid $(cat "$QS/agent.pid"))"; else say "agent: not running"; fi
  bash scripts/test-env.sh status | sed 's/^/  /'
}

case "${1:-up}" in
  up | start) up ;;
  stop)
    stop_pid agent "$QS/agent.pid"
    stop_pid hub "$QS/hub.pid"
    ;;
  status) status ;;
  reset)
    stop_pid agent "$QS/agent.pid"
    stop_pid hub "$QS/hub.pid"
    say "removing $QS"
    rm -rf "$QS"
    ;;
  *) die "usage: $0 [up|stop|status|reset]" ;;
esac
