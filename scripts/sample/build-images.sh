#!/usr/bin/env bash
# Builds the quickstart's sample images with no internet and pushes them to
# the local registry (127.0.0.1:5000), the way the integration tests make
# theirs (test/helpers/docker.ts): a root filesystem holding only a static
# busybox, `docker import`ed. No base image is pulled.
#
#   ferry-sample/web:1.0.0   busybox httpd serving the demo page on :8080
#   ferry-sample/app:1.0.0   busybox with an API document for httpd on :8081,
#                            used by the `api` and `worker` services
#
#   bash scripts/sample/build-images.sh     build (unless already built from the same inputs) and push
#
# Environment: FERRY_SAMPLE_REGISTRY (default 127.0.0.1:5000),
# FERRY_SAMPLE_BUSYBOX (a static busybox; default /bin/busybox from busybox-static).
# Prints one line per image: the registry reference it pushed.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD

REGISTRY=${FERRY_SAMPLE_REGISTRY:-127.0.0.1:5000}
TAG=1.0.0
SPEC_LABEL=ferry.sample.spec

say() { printf 'sample: %s\n' "$*" >&2; }
die() { printf 'sample: ERROR: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker not found; run bash scripts/test-env.sh"
curl -fsS -m 5 -o /dev/null "http://$REGISTRY/v2/" || die "no registry answers on http://$REGISTRY/v2/; run bash scripts/test-env.sh"

find_busybox() {
  local p
  for p in ${FERRY_SAMPLE_BUSYBOX:-} /bin/busybox /usr/bin/busybox; do
    [ -x "$p" ] || continue
    # An empty image has no dynamic loader: the binary must be static.
    if command -v ldd >/dev/null && ldd "$p" >/dev/null 2>&1; then
      say "$p is dynamically linked; skipping it"
      continue
    fi
    printf '%s' "$p"
    return
  done
  die "no static busybox found; install busybox-static (bash scripts/test-env.sh does)"
}
BUSYBOX=$(find_busybox)
APPLETS="sh ash httpd sleep cat echo printf ls mkdir rm touch env true false test [ kill ps date hostname id wget nc grep sed head tail wc tee uname"

# ---- the images' files --------------------------------------------------------------

web_files() { # root
  mkdir -p "$1/www"
  cat >"$1/www/index.html" <<'EOF'
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>demo-shop</title></head>
<body>
<h1>demo-shop 1.0.0</h1>
<p>Served by busybox httpd in the <code>web</code> service of the stack
<code>demo-shop</code>, deployed by a Ferry agent from a signed release.</p>
<p>The <code>api</code> and <code>worker</code> services run beside it on the
stack's own network; see <code>docker ps --filter label=ferry.stack=demo-shop</code>.</p>
</body>
</html>
EOF
}

app_files() { # root
  mkdir -p "$1/srv/api"
  printf '{"service":"demo-shop-api","version":"1.0.0","status":"ok"}\n' >"$1/srv/api/health.json"
  printf '{"items":[{"sku":"ferry-1","name":"A ferry ticket","price":12}]}\n' >"$1/srv/api/items.json"
  cat >"$1/bin/worker" <<'EOF'
#!/bin/sh
# Polls the api over the stack network (by service name) and records a heartbeat.
trap 'exit 0' TERM INT
while :; do
  if wget -q -O /tmp/items.json "http://${API_HOST:-api}:8081/api/items.json"; then date >/tmp/heartbeat; fi
  sleep "${INTERVAL:-5}" & wait $!
done
EOF
  chmod 755 "$1/bin/worker"
}

# ---- build, push ---------------------------------------------------------------------

# build NAME CMD-JSON EXPOSE FILES-FUNCTION
build() {
  local name=$1 cmd=$2 expose=$3 files=$4 image="ferry-sample/$1:$TAG" spec have root tarball id
  # Same inputs (this script, the busybox binary), same image: nothing to rebuild.
  spec=$(cat "$HERE/build-images.sh" "$BUSYBOX" | sha256sum | cut -c1-16)
  have=$(docker image inspect --format "{{index .Config.Labels \"$SPEC_LABEL\"}}" "$image" 2>/dev/null || true)
  if [ "$have" = "$spec" ]; then
    say "$image: up to date"
  else
    say "$image: building from $BUSYBOX"
    root=$(mktemp -d)
    tarball=$(mktemp --suffix=.tar)
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev"
    chmod 1777 "$root/tmp"
    cp "$BUSYBOX" "$root/bin/busybox"
    chmod 755 "$root/bin/busybox"
    local a
    for a in $APPLETS; do ln -s busybox "$root/bin/$a"; done
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    "$files" "$root"
    tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$tarball" .
    id=$(docker import \
      --change "CMD $cmd" --change 'ENV PATH=/bin' --change "EXPOSE $expose" \
      --change "LABEL $SPEC_LABEL=$spec" --change 'LABEL org.opencontainers.image.title=ferry-sample' \
      "$tarball" "$image")
    rm -rf "$root" "$tarball"
    say "$image: built ${id#sha256:}"
  fi
  docker tag "$image" "$REGISTRY/ferry-sample/$name:$TAG"
  docker push "$REGISTRY/ferry-sample/$name:$TAG" >/dev/null || die "docker push $REGISTRY/ferry-sample/$name:$TAG failed"
  say "$image: pushed $(docker image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' "$image" | tr ' ' '\n' | grep "^$REGISTRY/" | head -n1)"
  printf '%s\n' "$REGISTRY/ferry-sample/$name:$TAG"
}

build web '["httpd","-f","-p","8080","-h","/www"]' 8080 web_files
build app '["httpd","-f","-p","8081","-h","/srv"]' 8081 app_files
