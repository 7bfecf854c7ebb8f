#!/usr/bin/env bash
# By-hand check of a Native AOT publish (issue 13): the verbs an operator uses, from the AOT binary, in a namespace.
#
#   dotnet publish src/ProxySelection.Host -c Release -r linux-x64 -p:PublishAot=true [-p:CppCompilerAndLinker=clang-14] -o DIR
#   sudo src/ProxySelection.Host/packaging/aot-smoke.sh DIR/proxysel
#
# Runs `proxysel run` (JSON logs, a Prometheus endpoint, an events file), then `status`, `status --json`, `cache show`,
# `cache flush`, a scrape, SIGTERM (drain and stop line), `decode` of a test vector, SIGKILL and `cleanup` (no PSEL rule
# left). Exits 1 at the first failure. Root (namespaces, iptables); removes its namespace and files on exit; stops only
# the daemons it started, by pid.
set -euo pipefail

exe=${1:?usage: $0 PATH/TO/proxysel}
repo=$(cd "$(dirname "$0")/../../.." && pwd)
. "$(dirname "$0")/netns-daemon.sh" aot
fail() { echo "aot-smoke: FAILED: $*" >&2; [ -f "$work/out" ] && tail -20 "$work/out" >&2; exit 1; }
in_ns() { ip netns exec "$ns" "$@"; }
start() { local rc=0; psel_run "$exe" "$work/out" "$@" || rc=$?; [ "$rc" = 0 ] || fail "run did not reach running (psel_run $rc: 1 exited, 2 timed out)"; }

start --events "$work/events.jsonl" --set Proxy:Logging=json --set Telemetry:Prometheus:Endpoint=http://127.0.0.1:9464/metrics
in_ns "$exe" status | grep -q '^proxysel running: role=downgrade' || fail status
in_ns "$exe" status --json | grep -q '"ok":true,"daemon":{"state":"running"' || fail "status --json"
in_ns "$exe" cache show | grep -q '^cache' || fail "cache show"
in_ns "$exe" cache flush | grep -q '^cache flushed' || fail "cache flush"
in_ns curl -sf http://127.0.0.1:9464/metrics | grep -q '^proxysel_queue_drops_total' || fail "prometheus scrape"
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; pid=; [ "$rc" = 0 ] || fail "exit status $rc after SIGTERM"
grep -q 'proxysel: stopped, rules removed' "$work/out" || fail "stop line"
grep -q '"event":"stopped"' "$work/events.jsonl" || fail "stopped event"
"$exe" decode --pcap "$repo/tests/vectors/addaddr-v4.pcap" | grep -q '"frame":1' || fail decode
start
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; pid=
in_ns iptables-save | grep -q PSEL || fail "no rules left behind by SIGKILL (nothing for cleanup to do)"
in_ns "$exe" cleanup > /dev/null || fail cleanup
! in_ns iptables-save | grep -q PSEL || fail "rules left after cleanup"
echo "aot-smoke: $exe: run, status, cache show/flush, Prometheus, events, SIGTERM, decode, cleanup: ok"
