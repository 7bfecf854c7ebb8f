#!/bin/bash
# Minimal three-namespace lab for relay connection-rate profiling (issue 7): client ─ proxy ─ server, 198.18.0.0/15.
# usage: connrate-lab.sh up PREFIX | down PREFIX
# client 198.18.1.1 ─ 198.18.1.2 proxy 198.18.2.1 ─ 198.18.2.2 server (nginx on :8080 serving /small).
set -e
cmd=$1; p=${2:?prefix}
case $cmd in
up)
  for n in c x s; do ip netns add ${p}$n; ip -n ${p}$n link set lo up; done
  ip link add ${p}c0 netns ${p}c type veth peer name ${p}x0 netns ${p}x
  ip link add ${p}x1 netns ${p}x type veth peer name ${p}s0 netns ${p}s
  ip -n ${p}c addr add 198.18.1.1/24 dev ${p}c0; ip -n ${p}c link set ${p}c0 up
  ip -n ${p}x addr add 198.18.1.2/24 dev ${p}x0; ip -n ${p}x link set ${p}x0 up
  ip -n ${p}x addr add 198.18.2.1/24 dev ${p}x1; ip -n ${p}x link set ${p}x1 up
  ip -n ${p}s addr add 198.18.2.2/24 dev ${p}s0; ip -n ${p}s link set ${p}s0 up
  ip -n ${p}c route add default via 198.18.1.2
  ip -n ${p}s route add default via 198.18.2.1
  ip netns exec ${p}x sysctl -qw net.ipv4.ip_forward=1
  for n in c x s; do
    ip netns exec ${p}$n sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 net.mptcp.blackhole_timeout=0
  done
  d=/tmp/${p}-www; mkdir -p $d/root; echo ok > $d/root/small
  cat > $d/nginx.conf <<NG
worker_processes 1; pid $d/nginx.pid; error_log stderr error; daemon on;
events { worker_connections 4096; }
http { access_log off; server { listen 198.18.2.2:8080 backlog=4096; root $d/root; } }
NG
  ip netns exec ${p}s nginx -c $d/nginx.conf
  ;;
down)
  [ -f /tmp/${p}-www/nginx.pid ] && kill $(cat /tmp/${p}-www/nginx.pid) 2>/dev/null || true
  for n in c x s; do ip netns del ${p}$n 2>/dev/null || true; done
  rm -rf /tmp/${p}-www
  ;;
esac
