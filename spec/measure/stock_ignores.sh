#!/usr/bin/env bash
# Checks that a stock Linux MPTCP listener answers an MP_CAPABLE SYN that also carries MP_PROXY with an
# MP_CAPABLE SYN/ACK (i.e. skips MPTCP subtype 0xF), for the presence and long forms, placed after or before
# MP_CAPABLE, with version nibble 1 and 0; and records whether tshark reports a dissector bug on the stream.
# Spec Section 4.1. Run as root; namespaces carry a per-run prefix and are removed on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
p="stk$$"; c="${p}c"; s="${p}s"; out=$(mktemp -d)
cleanup() { ip netns del "$c" 2>/dev/null || true; ip netns del "$s" 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT
ip netns add "$c"; ip netns add "$s"
ip link add "${p}a" netns "$c" type veth peer name "${p}b" netns "$s"
ip netns exec "$c" ip addr add 198.18.2.1/24 dev "${p}a"; ip netns exec "$c" ip link set "${p}a" up
ip netns exec "$s" ip addr add 198.18.2.2/24 dev "${p}b"; ip netns exec "$s" ip link set "${p}b" up
ip netns exec "$s" sysctl -qw net.mptcp.enabled=1
printf '%-6s %-34s %-22s %s\n' first option synack_mptcp_subtypes tshark_dissector_bug
for first in 0 1; do
  # none; presence v1; presence v0; long form v1 (vector long-probe-v4); long form with version nibble 0.
  for hex in - 1e04f1a5 1e04f0a5 1e10f1a595030100ffea9c614e3f1072 1e10f0a595030100ffea9c614e3f1072; do
    port=$((7000 + RANDOM % 1000))
    ip netns exec "$s" timeout 6 tcpdump -i "${p}b" -U -w "$out/x.pcap" tcp >/dev/null 2>&1 & dump=$!
    ip netns exec "$s" timeout 4 python3 "$here/mptcp_peer.py" server 198.18.2.2 "$port" >/dev/null 2>&1 & srv=$!
    sleep 1.5
    ip netns exec "$c" env MP_PROXY_FIRST="$first" python3 "$here/inject_syn.py" 198.18.2.1 198.18.2.2 "$port" "${hex#-}" >/dev/null
    sleep 0.8
    kill "$dump" 2>/dev/null || true; wait "$dump" 2>/dev/null || true
    kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true
    synack=$(tshark -r "$out/x.pcap" -Y 'tcp.flags.syn==1 && tcp.flags.ack==1' -T fields -e tcp.options.mptcp.subtype 2>/dev/null | head -1)
    bugs=$(tshark -r "$out/x.pcap" -T fields -e frame.number 2>&1 | grep -c 'Dissector bug' || true)
    printf '%-6s %-34s %-22s %s\n' "$first" "$hex" "${synack:-none}" "$bugs"
  done
done
uname -r; tshark --version 2>/dev/null | head -1
