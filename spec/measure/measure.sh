#!/usr/bin/env bash
# Measures the TCP option space the stock kernel leaves on MPTCP handshake segments (spec Section 5.1).
# Two namespaces joined by a veth pair; the client has a second address with a "subflow" endpoint so that
# the in-kernel path manager opens an MP_JOIN subflow. Run as root. Namespaces are removed on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
p="msr$$"                       # per-run prefix: parallel runs cannot collide
c="${p}c"; s="${p}s"; out=$(mktemp -d)
cleanup() { ip netns del "$c" 2>/dev/null || true; ip netns del "$s" 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT

ip netns add "$c"; ip netns add "$s"
ip link add "${p}a" netns "$c" type veth peer name "${p}b" netns "$s"
for ns in "$c" "$s"; do
  ip netns exec "$ns" sysctl -qw net.mptcp.enabled=1 net.mptcp.blackhole_timeout=0
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip mptcp limits set subflow 2 add_addr_accepted 2
done
ip netns exec "$c" ip addr add 198.18.1.1/24 dev "${p}a"
ip netns exec "$c" ip addr add 198.18.1.3/24 dev "${p}a"
ip netns exec "$c" ip -6 addr add 2001:db8:1::1/64 dev "${p}a" nodad
ip netns exec "$c" ip -6 addr add 2001:db8:1::3/64 dev "${p}a" nodad
ip netns exec "$s" ip addr add 198.18.1.2/24 dev "${p}b"
ip netns exec "$s" ip -6 addr add 2001:db8:1::2/64 dev "${p}b" nodad
ip netns exec "$c" ip link set "${p}a" up
ip netns exec "$s" ip link set "${p}b" up
ip netns exec "$c" ip mptcp endpoint add 198.18.1.3 dev "${p}a" subflow
ip netns exec "$c" ip mptcp endpoint add 2001:db8:1::3 dev "${p}a" subflow

run() { # $1 label, $2 server addr, $3 client addr, $4 timestamps 0|1
  local label=$1 addr=$2 src=$3 ts=$4 port=$((5000 + RANDOM % 1000))
  for ns in "$c" "$s"; do ip netns exec "$ns" sysctl -qw net.ipv4.tcp_timestamps="$ts"; done
  ip netns exec "$s" timeout 10 tcpdump -i "${p}b" -U -w "$out/$label.pcap" "tcp[tcpflags] & tcp-syn != 0 or (ip6 and ip6[13+40] & 2 != 0)" >/dev/null 2>&1 &
  local dump=$!
  sleep 0.5
  ip netns exec "$s" timeout 10 python3 "$here/mptcp_peer.py" server "$addr" "$port" &
  local srv=$!
  sleep 0.3
  ip netns exec "$c" timeout 10 python3 "$here/mptcp_peer.py" client "$addr" "$port" "$src"
  wait "$srv"
  sleep 0.3
  kill "$dump" 2>/dev/null || true; wait "$dump" 2>/dev/null || true
  # One line per handshake segment: flags, MPTCP subtype, TCP header length, option bytes used, option kinds.
  tshark -r "$out/$label.pcap" -Y "tcp.flags.syn==1 && mptcp" -T fields -E separator=' ' \
      -e tcp.flags.ack -e tcp.options.mptcp.subtype -e tcp.hdr_len -e tcp.option_kind -e tcp.option_len 2>/dev/null |
    awk -v l="$label" '{ seg = ($1 == 1 ? "SYN/ACK" : "SYN"); st = ($2 == 0 ? "MP_CAPABLE" : "MP_JOIN");
        printf "%-8s %-10s %-8s hdr=%2d used=%2d left=%2d kinds=%s lens=%s\n", l, st, seg, $3, $3 - 20, 60 - $3, $4, $5 }'
}
run v4-ts   198.18.1.2     198.18.1.1     1
run v4-nots 198.18.1.2     198.18.1.1     0
run v6-ts   2001:db8:1::2  2001:db8:1::1  1
run v6-nots 2001:db8:1::2  2001:db8:1::1  0
uname -r
