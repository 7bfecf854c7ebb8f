# shellcheck shell=bash
# Sourced by aot-smoke.sh and measure-start.sh, after their arguments are read: `. netns-daemon.sh TAG`. Requires root,
# makes a network namespace ($ns, MPTCP on) and a work directory ($work), and on exit, whatever happened, kills the
# daemon psel_run started ($pid, by pid only) and removes both.
psel_script=$(basename "$0" .sh)
[ "$(id -u)" = 0 ] || { echo "$psel_script: root is required (network namespaces, iptables)" >&2; exit 3; }
ns=psel-${1:?netns-daemon.sh: a tag}-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/psel-$1.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" sysctl -qw net.mptcp.enabled=1

# psel_run EXE OUT [ARGS...]: `EXE run --ports 80 ARGS` in the namespace, its output in OUT, its pid in $pid; returns
# once it printed its `running` line (the moment it notifies systemd READY=1: queue bound, rules in), 1 if it exited
# first, 2 if that took over 30 s.
psel_run() {
  local exe=$1 out=$2
  shift 2
  : > "$out"  # exists and empty before the daemon starts: the wait below must not read an older file
  ip netns exec "$ns" "$exe" run --ports 80 "$@" >> "$out" 2>&1 &
  pid=$!
  for _ in $(seq 1 3000); do
    grep -q 'proxysel: running' "$out" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.01
  done
  return 2
}
