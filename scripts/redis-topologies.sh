#!/usr/bin/env bash
# Starts and stops the Redis topologies beyond a single node, on loopback, for tests and
# benchmarks: a Redis Cluster of 3 masters with one replica each, and a Sentinel setup of one
# master, one replica and 3 sentinels. Idempotent: what already runs is left alone; `stop`
# stops only what this script started (the processes whose pid files are in its directory).
#
#   scripts/redis-topologies.sh start [cluster|sentinel|all]   (default: all)
#   scripts/redis-topologies.sh stop  [cluster|sentinel|all]
#   scripts/redis-topologies.sh status
#
# Ports (change the first with SAYIIR_TOPOLOGY_PORT, default 7000; the directory with
# SAYIIR_TOPOLOGY_DIR, default /tmp/sayiir-redis-topologies-<first port>):
#   cluster   first … first+5            masters and replicas, formed by `redis-cli --cluster create`
#   sentinel  first+10 (master), first+11 (replica), first+20 … first+22 (sentinels, master name
#             "sayiir")
# Tests that kill or stall servers start their own copy on ports of their own with the same
# script, never the shared one.
set -euo pipefail

first=${SAYIIR_TOPOLOGY_PORT:-7000}
dir=${SAYIIR_TOPOLOGY_DIR:-/tmp/sayiir-redis-topologies-$first}
master_name=sayiir

say() { printf 'redis-topologies: %s\n' "$*"; }
die() { printf 'redis-topologies: %s\n' "$*" >&2; exit 1; }
answers() { redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null | grep -q PONG; }
wait_for() { # wait_for <what> <command…>: up to 30 s
  local what=$1; shift
  for _ in $(seq 150); do "$@" && return 0; sleep 0.2; done
  die "$what did not happen within 30 s; see the logs in $dir"
}

command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
  || die "redis-server and redis-cli are needed (scripts/services.sh installs them)"

# Whether the server answering on port $1 is the one whose pid file is in directory $2.
ours() {
  local pid
  pid=$(cat "$2/redis.pid" 2>/dev/null) || return 1
  redis-cli -p "$1" INFO server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"
}

# start_node <port> <role dir> <extra redis-server arguments…>
start_node() {
  local port=$1 node_dir=$2; shift 2
  if answers "$port"; then
    ours "$port" "$node_dir" && return 0
    die "port $port answers but not with a server this script started; stop it or choose other ports (SAYIIR_TOPOLOGY_PORT)"
  fi
  mkdir -p "$node_dir"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$node_dir" \
    --pidfile "$node_dir/redis.pid" --logfile "$node_dir/redis.log" --save "" \
    --appendonly yes --appendfsync everysec --repl-diskless-sync-delay 0 "$@"
  wait_for "redis on port $port answering" answers "$port"
}

cluster_ok() { redis-cli -p "$first" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok'; }

start_cluster() {
  local nodes=()
  for i in 0 1 2 3 4 5; do
    local port=$((first + i))
    start_node "$port" "$dir/cluster/$port" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 2000
    nodes+=("127.0.0.1:$port")
  done
  if cluster_ok; then
    say "cluster already formed on ports $first-$((first + 5))"
    return 0
  fi
  if [ "$(redis-cli -p "$first" CLUSTER INFO | grep -o 'cluster_known_nodes:[0-9]*' | cut -d: -f2)" = 1 ]; then
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  fi
  wait_for "cluster on ports $first-$((first + 5)) reaching state ok" cluster_ok
  say "cluster: redis://127.0.0.1:$first (3 masters, 3 replicas, ports $first-$((first + 5)))"
}

# Whether the node on port $1 is a replica whose link to its master is up (its first sync
# done), or a master with a replica (after a failover the two trade places).
replica_in_sync() {
  local info
  info=$(redis-cli -p "$1" INFO replication 2>/dev/null)
  grep -q 'master_link_status:up' <<<"$info" || grep -qE 'connected_slaves:[1-9]' <<<"$info"
}

# Whether the sentinel on port $1 knows the master, its replica and the two other sentinels.
sentinel_ready() {
  redis-cli -p "$1" SENTINEL MASTER "$master_name" 2>/dev/null | awk '
    NR % 2 == 1 { name = $0; next }
    name == "num-slaves" { slaves = $0 }
    name == "num-other-sentinels" { others = $0 }
    END { exit !(slaves >= 1 && others == 2) }'
}

start_sentinel() {
  local master=$((first + 10)) replica=$((first + 11))
  start_node "$master" "$dir/sentinel/$master"
  start_node "$replica" "$dir/sentinel/$replica" --replicaof 127.0.0.1 "$master"
  wait_for "the replica on port $replica in sync with its master" replica_in_sync "$replica"
  for i in 0 1 2; do
    local port=$((first + 20 + i)) node_dir="$dir/sentinel/s$i"
    if answers "$port"; then
      ours "$port" "$node_dir" && continue
      die "port $port answers but not with a sentinel this script started; stop it or choose other ports (SAYIIR_TOPOLOGY_PORT)"
    fi
    mkdir -p "$node_dir"
    # Sentinels rewrite their configuration file: each gets one of its own.
    cat >"$node_dir/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
daemonize yes
pidfile $node_dir/redis.pid
logfile $node_dir/redis.log
dir $node_dir
sentinel resolve-hostnames no
sentinel monitor $master_name 127.0.0.1 $master 2
sentinel down-after-milliseconds $master_name 1000
sentinel failover-timeout $master_name 5000
sentinel parallel-syncs $master_name 1
EOF
    redis-server "$node_dir/sentinel.conf" --sentinel
    wait_for "sentinel on port $port answering" answers "$port"
  done
  wait_for "sentinels agreeing on the master and its replica" sentinel_ready "$((first + 20))"
  say "sentinel: master name $master_name, sentinels redis://127.0.0.1:$((first + 20)), :$((first + 21)), :$((first + 22))"
}

stop_dir() {
  local base=$1
  [ -d "$base" ] || return 0
  while IFS= read -r pidfile; do
    local pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    # A pid file left by a server killed meanwhile may name another process by now.
    if [ -n "$pid" ] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done < <(find "$base" -name redis.pid)
  rm -rf "$base"
}

what=${2:-all}
case "${1:-}" in
  start)
    case "$what" in
      cluster) start_cluster ;;
      sentinel) start_sentinel ;;
      all) start_cluster; start_sentinel ;;
      *) die "unknown topology $what: use cluster, sentinel or all" ;;
    esac ;;
  stop)
    case "$what" in
      cluster) stop_dir "$dir/cluster" ;;
      sentinel) stop_dir "$dir/sentinel" ;;
      all) stop_dir "$dir/cluster"; stop_dir "$dir/sentinel"; rm -rf "$dir" ;;
      *) die "unknown topology $what: use cluster, sentinel or all" ;;
    esac
    say "stopped $what" ;;
  status)
    if cluster_ok; then say "cluster up on $first-$((first + 5))"; else say "cluster down"; fi
    if answers "$((first + 20))"; then
      say "sentinel up; master $(redis-cli -p "$((first + 20))" SENTINEL GET-MASTER-ADDR-BY-NAME "$master_name" | tr '\n' ':' | sed 's/:$//')"
    else
      say "sentinel down"
    fi ;;
  *) die "usage: $0 start|stop [cluster|sentinel|all] | status" ;;
esac
