#!/usr/bin/env bash
# Start to READY and idle memory of published daemons (issue 13, "a daemon that starts warm"):
#
#   sudo src/ProxySelection.Host/packaging/measure-start.sh [-n STARTS] PUBLISH_DIR...
#
# For each PUBLISH_DIR (a `dotnet publish` output holding the proxysel executable), STARTS times (default 10): a fresh
# `proxysel run` in a network namespace of its own, timed from the exec to its `running` line (the moment it notifies
# systemd READY=1: queue bound, rules in), its warm-up line, then its resident memory (VmRSS, VmHWM) after 2 s idle, then
# SIGTERM. Prints one line per start and a median line per directory. Root (namespaces, iptables); removes its
# namespace on exit whatever happened; stops only the daemons it started, by pid.
set -euo pipefail

starts=10
if [ "${1:-}" = "-n" ]; then starts=$2; shift 2; fi
[ $# -ge 1 ] || { echo "usage: $0 [-n STARTS] PUBLISH_DIR..." >&2; exit 2; }
. "$(dirname "$0")/netns-daemon.sh" start

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

for dir in "$@"; do
  exe=$dir/proxysel
  [ -x "$exe" ] || { echo "measure-start: no $exe" >&2; exit 2; }
  : > "$work/ready" ; : > "$work/rss" ; : > "$work/hwm" ; : > "$work/warm"
  for i in $(seq 1 "$starts"); do
    out=$work/out-$(basename "$dir")-$i
    t0=$(date +%s%N)
    rc=0; psel_run "$exe" "$out" || rc=$?
    t1=$(date +%s%N)
    [ "$rc" = 0 ] || { echo "measure-start: $exe did not start:" >&2; cat "$out" >&2; exit 1; }
    ready=$(( (t1 - t0) / 1000000 ))
    sleep 2
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
    warm=$(sed -n 's/.*warmed up, [0-9]* methods compiled in \([0-9]*\) ms.*/\1/p' "$out" | head -1)
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    echo "$ready" >> "$work/ready"; echo "$rss" >> "$work/rss"; echo "$hwm" >> "$work/hwm"; echo "${warm:-0}" >> "$work/warm"
    printf '%s start %d: ready %d ms, warm-up %s ms, idle RSS %d KiB (peak %d KiB)\n' "$dir" "$i" "$ready" "${warm:--}" "$rss" "$hwm"
  done
  printf '%s median of %d: ready %s ms, warm-up %s ms, idle RSS %s KiB (peak %s KiB); load %s\n' "$dir" "$starts" \
    "$(median < "$work/ready")" "$(median < "$work/warm")" "$(median < "$work/rss")" "$(median < "$work/hwm")" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
