#!/usr/bin/env bash
# Real services for Cloud Sync's scale-out tests, on 127.0.0.1, free ports, one temporary folder:
# PostgreSQL 15 (metadata), OpenStack Swift with its s3api middleware (S3-compatible chunk
# storage, with memcached), and HAProxy installed for the multi-instance tests. Installs what is
# missing with apt, starts each daemon by itself (no systemd), and stops them by PID.
#
#   scripts/services.sh start [DIR]   start everything; prints the settings and writes DIR/env.sh
#   scripts/services.sh env [DIR]     print the settings of running services
#   scripts/services.sh stop [DIR]    stop everything and remove DIR
#
# DIR defaults to $CLOUDSYNC_SERVICES_DIR or /tmp/cloudsync-services. The settings (for
# `source DIR/env.sh`):
#   CLOUDSYNC_TEST_PG_URL   postgres://USER:PASS@127.0.0.1:PORT/DB  (the role may create schemas)
#   CLOUDSYNC_TEST_S3_URL   s3://BUCKET?endpoint=http://127.0.0.1:PORT&region=us-east-1
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the S3 credentials (Swift tempauth test:tester)
#   CLOUDSYNC_HAPROXY       the haproxy binary (tests run their own, in front of their instances)
# Must run as root (apt, and PostgreSQL/Swift run as their own users). Test settings only:
# fsync is off in PostgreSQL, one replica in Swift.
set -euo pipefail

cmd=${1:-}
DIR=${2:-${CLOUDSYNC_SERVICES_DIR:-/tmp/cloudsync-services}}
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3 # Swift's scripts need the system Python, whatever is first on PATH

say() { echo "services: $*" >&2; }
die() {
  say "Cannot $*"
  exit 1
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits up to $2 seconds for the command $1 to succeed.
wait_for() {
  local what=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    if eval "$what" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

install_missing() {
  local need=()
  [[ -x $PGBIN/postgres ]] || need+=(postgresql-15)
  command -v swift-proxy-server >/dev/null || need+=(swift swift-proxy swift-account swift-container swift-object)
  command -v memcached >/dev/null || need+=(memcached)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v curl >/dev/null || need+=(curl)
  if ((${#need[@]} > 0)); then
    say "installing ${need[*]} with apt (about 80 s for Swift)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${need[@]}" >"$DIR/apt.log" 2>&1 || {
      apt-get update >>"$DIR/apt.log" 2>&1 && apt-get install -y "${need[@]}" >>"$DIR/apt.log" 2>&1
    } || die "install ${need[*]}: see $DIR/apt.log"
  fi
}

start_postgres() {
  local port pw
  port=$(free_port)
  pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  mkdir -p "$DIR/pg"
  echo "$pw" >"$DIR/pg/pw"
  chown -R postgres "$DIR/pg"
  chmod 700 "$DIR/pg"
  runuser -u postgres -- "$PGBIN/initdb" -D "$DIR/pg/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$DIR/pg/pw" --no-sync -E UTF8 >"$DIR/pg/initdb.log" 2>&1 ||
    die "initialize PostgreSQL: see $DIR/pg/initdb.log"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/pg/data" -w -l "$DIR/pg/server.log" \
    -o "-p $port -k $DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
    start >/dev/null || die "start PostgreSQL: see $DIR/pg/server.log"
  runuser -u postgres -- "$PGBIN/psql" -h "$DIR/pg" -p "$port" -U postgres -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE cloudsync LOGIN PASSWORD '$pw'" -c "CREATE DATABASE cloudsync OWNER cloudsync" \
    >/dev/null || die "create the PostgreSQL database"
  echo "export CLOUDSYNC_TEST_PG_URL='postgres://cloudsync:$pw@127.0.0.1:$port/cloudsync'" >>"$DIR/env.sh"
  say "PostgreSQL 15 on 127.0.0.1:$port"
}

swift_server_conf() { # NAME PORT
  cat <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
user = swift
swift_dir = $DIR/swift/etc
devices = $DIR/swift/node
mount_check = false
log_level = WARNING

[pipeline:main]
pipeline = $1-server

[app:$1-server]
use = egg:swift#$1

[$1-replicator]
[$1-auditor]
EOF
}

start_swift() {
  local s="$DIR/swift" pa pc po pp pm name
  pa=$(free_port) pc=$(free_port) po=$(free_port) pp=$(free_port) pm=$(free_port)
  mkdir -p "$s/etc" "$s/node/d1" "$s/run"
  memcached -u memcache -l 127.0.0.1 -p "$pm" -U 0 -m 64 >"$s/memcached.log" 2>&1 &
  echo $! >"$s/run/memcached.pid"
  swift_server_conf account "$pa" >"$s/etc/account-server.conf"
  swift_server_conf container "$pc" >"$s/etc/container-server.conf"
  swift_server_conf object "$po" >"$s/etc/object-server.conf"
  cat >"$s/etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $pp
workers = 0
user = swift
swift_dir = $s/etc
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$pm

EOF
  for f in catch_errors gatekeeper healthcheck proxy-logging listing_formats bulk tempurl copy slo \
    dlo versioned_writes; do
    printf '[filter:%s]\nuse = egg:swift#%s\n' "$f" "${f//-/_}" >>"$s/etc/proxy-server.conf"
  done
  (
    cd "$s/etc"
    for ring in account:$pa container:$pc object:$po; do
      name=${ring%%:*}
      "$PY" /usr/bin/swift-ring-builder "$name.builder" create 8 1 1 >/dev/null
      "$PY" /usr/bin/swift-ring-builder "$name.builder" add "r1z1-127.0.0.1:${ring##*:}/d1" 100 >/dev/null
      "$PY" /usr/bin/swift-ring-builder "$name.builder" rebalance >/dev/null 2>&1 || true
    done
  )
  chown -R swift "$s"
  for name in account container object proxy; do
    "$PY" "/usr/bin/swift-$name-server" "$s/etc/$name-server.conf" -v >"$s/$name.log" 2>&1 &
    echo $! >"$s/run/$name.pid"
  done
  wait_for "curl -fsS http://127.0.0.1:$pp/healthcheck" 60 ||
    die "start Swift: no healthcheck on 127.0.0.1:$pp within 60 s; see $s/*.log"
  {
    echo "export CLOUDSYNC_TEST_S3_URL='s3://cloudsync-test?endpoint=http://127.0.0.1:$pp&region=us-east-1'"
    echo "export AWS_ACCESS_KEY_ID='test:tester'"
    echo "export AWS_SECRET_ACCESS_KEY='testing'"
  } >>"$DIR/env.sh"
  say "Swift (s3api) on 127.0.0.1:$pp"
}

stop_all() {
  [[ -d $DIR ]] || return 0
  if [[ -f $DIR/pg/data/postmaster.pid ]]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  local f pid pids=()
  for f in "$DIR"/swift/run/*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$DIR"
}

case $cmd in
start)
  [[ $(id -u) == 0 ]] || die "start services: run as root (apt, and the daemons' own users)"
  [[ -e $DIR ]] && die "start services: $DIR exists (running already? scripts/services.sh stop $DIR)"
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  trap 'say "start failed; stopping what started"; stop_all' ERR
  install_missing
  : >"$DIR/env.sh"
  start_postgres
  start_swift
  echo "export CLOUDSYNC_HAPROXY='$(command -v haproxy)'" >>"$DIR/env.sh"
  trap - ERR
  cat "$DIR/env.sh"
  ;;
env)
  [[ -f $DIR/env.sh ]] || die "print settings: no services running in $DIR"
  cat "$DIR/env.sh"
  ;;
stop)
  stop_all
  say "stopped"
  ;;
*)
  echo "usage: scripts/services.sh start|env|stop [DIR]" >&2
  exit 2
  ;;
esac
