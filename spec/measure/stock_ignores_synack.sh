#!/usr/bin/env bash
# Checks that a stock Linux MPTCP client accepts an MP_CAPABLE SYN/ACK that also carries MP_PROXY (the short
# form a holder puts on its SYN/ACK toward the client: option space exactly 40 bytes) and keeps running MPTCP.
# Spec Section 4.1. Run as root; namespaces carry a per-run prefix and are removed on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
p="sak$$"; c="${p}c"; s="${p}s"; out=$(mktemp -d)
cleanup() { ip netns del "$c" 2>/dev/null || true; ip netns del "$s" 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT
ip netns add "$c"; ip netns add "$s"
ip link add "${p}a" netns "$c" type veth peer name "${p}b" netns "$s"
ip netns exec "$c" ip addr add 198.18.4.1/24 dev "${p}a"; ip netns exec "$c" ip link set "${p}a" up
ip netns exec "$s" ip addr add 198.18.4.2/24 dev "${p}b"; ip netns exec "$s" ip link set "${p}b" up
ip netns exec "$c" sysctl -qw net.mptcp.enabled=1 net.mptcp.blackhole_timeout=0
# No listener on the server side: its kernel would reset the SYN and the handshake ACK; drop those resets.
ip netns exec "$s" iptables -A OUTPUT -p tcp --tcp-flags RST RST -j DROP
for hex in nompc - 1e08f1a5a5039f54 1e08f1a5b503efc6; do
  port=$((7000 + RANDOM % 1000))
  ip netns exec "$s" timeout 6 tcpdump -i "${p}b" -U -w "$out/x.pcap" tcp >/dev/null 2>&1 & dump=$!
  ip netns exec "$s" timeout 8 python3 "$here/answer_synack.py" "$port" "${hex#-}" >/dev/null & answer=$!
  sleep 1.5
  state=$(ip netns exec "$c" timeout 8 python3 "$here/mptcp_state.py" 198.18.4.2 "$port" 2>&1 || true)
  wait "$answer" || true
  sleep 0.5; kill "$dump" 2>/dev/null || true; wait "$dump" 2>/dev/null || true
  bugs=$(tshark -r "$out/x.pcap" -T fields -e frame.number 2>&1 | grep -c 'Dissector bug' || true)
  echo "SYN/ACK extra option: ${hex}; client: ${state}; tshark dissector bug reports: ${bugs}"
done
uname -r
