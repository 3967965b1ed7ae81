#!/usr/bin/env bash
# Ferry in one command, on one machine: a hub on 127.0.0.1:7443, tenant
# `demo`, and one agent enrolled into it and connected, talking to the local
# Docker engine; then a sample stack deployed through it as a signed release:
# images built offline and pushed to the local registry (scripts/sample/),
# release keys and the tenant's trust root, `demo-shop@1.0.0` created from
# scripts/sample/docker-compose.yml, signed, deployed, applied by the agent
# and answering on http://127.0.0.1:8088/. Safe to run again: what exists is
# reused, what runs is left running.
#
#   bash scripts/quickstart.sh          set up (or check) everything, print where to look
#   bash scripts/quickstart.sh stop     stop the agent, remove the sample stack's containers, stop the hub (state is kept)
#   bash scripts/quickstart.sh status   show what runs
#   bash scripts/quickstart.sh reset    stop, then delete ./.ferry-quickstart
#
# Environment: FERRY_QUICKSTART_DIR (default ./.ferry-quickstart),
# FERRY_QUICKSTART_LISTEN (default 127.0.0.1:7443), FERRY_QUICKSTART_SAMPLE=0
# to skip the sample stack.
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
KEYS_DIR=$QS/keys
SAMPLE=${FERRY_QUICKSTART_SAMPLE:-1}
STACK=demo-shop
STACK_VERSION=1.0.0
SAMPLE_COMPOSE=scripts/sample/docker-compose.yml
SAMPLE_URL=http://127.0.0.1:8088/

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

# The operator CLI against the quickstart hub (token through the environment, not argv).
ferry() { FERRY_HUB=$HUB_URL FERRY_TOKEN=$(cat "$TOKEN_FILE") node dist/cli/main.js "$@"; }

# Exit 0 when a node expression over the JSON document on stdin (`d`, extra args in `a`) is true.
json_test() { # expression [args...]
  node -e 'let s="";process.stdin.on("data",x=>s+=x).on("end",()=>{const d=JSON.parse(s),a=process.argv.slice(2);process.exit(eval(process.argv[1])?0:1)})' "$@"
}

# The sample release on the agent, as it reports it (`ferry agent show --json` -> .running.releases):
# "<state> [code]" for STACK@VERSION, or nothing when the agent has not reported it.
release_state() { # agent-id
  ferry agent show "$1" --json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const [stack,version]=process.argv.slice(1);const r=(JSON.parse(s).running?.releases??[]).find(x=>x.stack===stack&&x.version===version);if(r)process.stdout.write(`${r.state} ${r.code??""}`.trim())})' "$STACK" "$STACK_VERSION"
}

# Containers (and networks) the quickstart agent owns on the engine: the sample stack.
remove_agent_objects() {
  local id ids
  [ -f "$AGENT_DIR/identity.json" ] || return 0
  if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    say "sample stack: docker does not answer; containers left as they are"
    return 0
  fi
  id=$(json_field agentId <"$AGENT_DIR/identity.json")
  ids=$(docker ps -aq --filter "label=ferry.agent=$id")
  if [ -n "$ids" ]; then
    say "sample stack: removing $(printf '%s\n' $ids | wc -l) container(s) of agent $id"
    docker rm -f $ids >/dev/null
  else
    say "sample stack: no containers of agent $id"
  fi
  ids=$(docker network ls -q --filter "label=ferry.agent=$id")
  if [ -n "$ids" ]; then docker network rm $ids >/dev/null || true; fi
}

sample_stack() { # agent-id
  local agent=$1 out rc state i k page=''
  # ---- images, built offline, into the local registry
  say "sample: building the images (scripts/sample/build-images.sh) and pushing them to 127.0.0.1:5000"
  bash scripts/sample/build-images.sh 2>&1 >/dev/null | sed 's/^/  /' || die "scripts/sample/build-images.sh failed"

  # ---- keys: a root key holder's and a release manager's (on a real setup: two people, two machines)
  mkdir -p "$KEYS_DIR"
  chmod 700 "$KEYS_DIR"
  for k in root release; do
    if [ -f "$KEYS_DIR/$k.key" ]; then
      say "keys: $KEYS_DIR/$k.key exists"
    else
      say "keys: ferry key generate --out $KEYS_DIR/$k.key"
      ferry key generate --out "$KEYS_DIR/$k.key" 2>&1 | sed 's/^/  /' || die "ferry key generate failed"
    fi
  done

  # ---- the tenant's trust root: drafted with those keys, active once the root key signs it
  out=$(ferry trust show --tenant "$TENANT" --json)
  if printf '%s' "$out" | json_test 'd.active'; then
    say "trust: $TENANT has an active root (fingerprint $(printf '%s' "$out" | json_field fingerprint))"
  else
    if ! printf '%s' "$out" | json_test 'd.pending'; then
      say "trust: ferry trust init --tenant $TENANT --root-key root.key.pub --release-key release.key.pub"
      ferry trust init --tenant "$TENANT" --root-key "$KEYS_DIR/root.key.pub" --release-key "$KEYS_DIR/release.key.pub" 2>&1 | sed 's/^/  /' || die "ferry trust init failed"
    fi
    say "trust: ferry trust sign --tenant $TENANT --key $KEYS_DIR/root.key"
    ferry trust sign --tenant "$TENANT" --key "$KEYS_DIR/root.key" 2>&1 | sed 's/^/  /' || die "ferry trust sign failed"
    out=$(ferry trust show --tenant "$TENANT" --json)
  fi
  # Keys regenerated against an older hub: signatures by this release key would never count.
  printf '%s' "$out" | json_test 'Object.values(d.active?.root?.keys ?? {}).some((k) => k.public === a[0])' "$(cat "$KEYS_DIR/release.key.pub")" ||
    die "the active trust root of $TENANT does not hold $KEYS_DIR/release.key.pub (keys made anew?); run \`bash scripts/quickstart.sh reset\` to start over"

  # ---- the release: every image resolved to its registry digest and pinned, then signed
  say "release: ferry release create $STACK $STACK_VERSION --compose $SAMPLE_COMPOSE"
  rc=0
  out=$(ferry release create "$STACK" "$STACK_VERSION" --compose "$SAMPLE_COMPOSE" 2>&1) || rc=$?
  case $rc in
    0) printf '%s\n' "$out" | sed 's/^/  /' ;;
    5) say "release: $STACK@$STACK_VERSION exists (FERRY_E_RELEASE_EXISTS); reusing it" ;;
    *) printf '%s\n' "$out" >&2; die "ferry release create exited $rc" ;;
  esac
  if ferry release show "$STACK@$STACK_VERSION" --json | json_test '(d.tenants ?? []).some((t) => t.tenant === a[0] && t.met)' "$TENANT"; then
    say "release: $STACK@$STACK_VERSION is signed (threshold of $TENANT met)"
  else
    say "release: ferry release sign $STACK@$STACK_VERSION --key $KEYS_DIR/release.key"
    ferry release sign "$STACK@$STACK_VERSION" --key "$KEYS_DIR/release.key" 2>&1 | sed 's/^/  /' || die "ferry release sign failed"
  fi

  # ---- deploy; then the agent verifies, runs the stack and reports it applied (healthy through its bake time)
  state=$(release_state "$agent")
  if [ "${state%% *}" = applied ]; then
    say "deploy: $STACK@$STACK_VERSION is already applied on $agent"
  else
    say "deploy: ferry deploy $STACK@$STACK_VERSION --agent $agent --wait"
    ferry deploy "$STACK@$STACK_VERSION" --agent "$agent" --wait 2>&1 | sed 's/^/  /' || die "ferry deploy failed; see $QS/agent.log"
    say "deploy: waiting for the agent to report $STACK@$STACK_VERSION applied (ferry agent show $agent --json)"
    for i in $(seq 1 180); do
      state=$(release_state "$agent")
      case "$state" in
        applied*) break ;;
        rolled-back* | failed*) tail -n 20 "$QS/agent.log" >&2; die "the agent rolled $STACK@$STACK_VERSION back ($state); see $QS/agent.log" ;;
      esac
      alive "$QS/agent.pid" || { tail -n 20 "$QS/agent.log" >&2; die "the agent exited; see $QS/agent.log"; }
      sleep 1
    done
    [ "${state%% *}" = applied ] || die "$STACK@$STACK_VERSION not applied after 180 s (state: ${state:-not reported}); see $QS/agent.log"
    say "deploy: $STACK@$STACK_VERSION applied on $agent"
  fi

  # ---- the page (after `stop`, the restarted agent puts the removed containers back: give it a moment)
  for i in $(seq 1 90); do
    page=$(curl -fsS -m 3 "$SAMPLE_URL" 2>/dev/null) && break
    page=''
    sleep 1
  done
  [ -n "$page" ] || die "nothing answers on $SAMPLE_URL; see docker ps --filter label=ferry.agent=$agent and $QS/agent.log"
  say "web: $SAMPLE_URL answers: $(printf '%s' "$page" | sed -n 's:.*<h1>\(.*\)</h1>.*:\1:p' | head -n1)"
  docker ps --filter "label=ferry.agent=$agent" --format '{{.Names}}  {{.Status}}  {{.Ports}}' | sed 's/^/  /'
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

  # ---- a console password for the admin (the hub's web console is on the same URL)
  if [ ! -s "$QS/console-password" ]; then
    (umask 077 && node -e 'process.stdout.write(require("node:crypto").randomBytes(15).toString("base64url"))' >"$QS/console-password.tmp")
    api POST /v1/users/quickstart/password "{\"password\":\"$(cat "$QS/console-password.tmp")\"}" >/dev/null
    mv "$QS/console-password.tmp" "$QS/console-password"
    say "console: password for quickstart written to $QS/console-password"
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
    start_bg "$QS/agent.pid" "$QS/agent.log" node --jitless --no-expose-wasm "$ROOT/dist/agent/main.js" run --state-dir "$AGENT_DIR"
  fi
  for i in $(seq 1 100); do
    agent_connected "$AGENT_ID" && break
    alive "$QS/agent.pid" || { tail -n 20 "$QS/agent.log" >&2; die "the agent exited; see $QS/agent.log"; }
    sleep 0.2
  done
  agent_connected "$AGENT_ID" || { tail -n 20 "$QS/agent.log" >&2; die "the agent did not connect within 20s; see $QS/agent.log"; }
  say "agent: $AGENT_ID connected (checked with $CHECKED_WITH)"

  if [ "$SAMPLE" != 0 ]; then sample_stack "$AGENT_ID"; fi

  local rel=${QS#"$ROOT"/}
  cat <<EOF

Ferry is up ($(($(date +%s) - t0))s).

  hub          $HUB_URL   (data: $rel/hub, log: $rel/hub.log)
  admin token  $rel/admin-token   (keep it private)
  console      $HUB_URL/   (log in as quickstart, password in $rel/console-password)
  tenant       $TENANT
  agent        $AGENT_ID   (state: $rel/agent, log: $rel/agent.log)
  docker       $(docker version --format '{{.Server.Version}}' 2>/dev/null), registry http://127.0.0.1:5000/v2/
EOF
  if [ "$SAMPLE" != 0 ]; then
    cat <<EOF
  sample       $STACK@$STACK_VERSION from $SAMPLE_COMPOSE, signed with $rel/keys/release.key
               web on $SAMPLE_URL   (api and worker beside it)
EOF
  fi
  cat <<EOF

Try the operator CLI:

  export FERRY_HUB=$HUB_URL FERRY_TOKEN=\$(cat $rel/admin-token)
  node dist/cli/main.js agent ls
  node dist/cli/main.js agent show $AGENT_ID    # .running: releases and containers the agent reports
  node dist/cli/main.js release ls
  node dist/cli/main.js audit ls --tenant $TENANT               # every operation, in a tamper-evident log
  node dist/cli/main.js token create --tenant $TENANT      # enroll another agent with it
  node dist/agent/main.js status --state-dir $rel/agent        # on the host: root, accepted releases, signers
  docker ps --filter label=ferry.agent=$AGENT_ID$([ "$SAMPLE" = 0 ] || printf '\n  curl %s' "$SAMPLE_URL")

Follow the logs:   tail -f $rel/hub.log $rel/agent.log
Stop:              bash scripts/quickstart.sh stop     (bash scripts/test-env.sh stop stops docker and the registry)
Start over:        bash scripts/quickstart.sh reset
EOF
}

status() {
  if alive "$QS/hub.pid"; then say "hub: running (pid $(cat "$QS/hub.pid")), $(hub_ready && echo ready || echo 'not ready') on $HUB_URL"; else say "hub: not running"; fi
  if alive "$QS/agent.pid"; then say "agent: running (pid $(cat "$QS/agent.pid"))"; else say "agent: not running"; fi
  if [ -f "$AGENT_DIR/identity.json" ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    local id
    id=$(json_field agentId <"$AGENT_DIR/identity.json")
    say "sample stack: $(docker ps -q --filter "label=ferry.agent=$id" | wc -l) container(s) of $id running; $SAMPLE_URL $(curl -fsS -m 2 -o /dev/null "$SAMPLE_URL" 2>/dev/null && echo answers || echo 'does not answer')"
  fi
  bash scripts/test-env.sh status | sed 's/^/  /'
}

usage() { sed -n '10,18p' "$0" | sed 's/^# \{0,1\}//'; }

case "${1:-up}" in
  -h | --help | help) usage ;;
  up | start) up ;;
  stop)
    stop_pid agent "$QS/agent.pid" # first: a running agent would put its containers back
    remove_agent_objects
    stop_pid hub "$QS/hub.pid"
    ;;
  status) status ;;
  reset)
    stop_pid agent "$QS/agent.pid"
    remove_agent_objects
    stop_pid hub "$QS/hub.pid"
    say "removing $QS"
    rm -rf "$QS"
    ;;
  *) usage >&2; die "unknown command ${1}: use up, stop, status or reset (or --help)" ;;
esac
