#!/bin/bash
# Per-connection profile of our stand-alone relay (`proxysel-lab bench relay`) or HAProxy under mptcpize, on loopback in a
# network namespace of its own (rpprof): an MPTCP wrk client (Connection: close, 16 connections) -> subject -> TCP nginx.
# Used for issue 13's relay profile (relayperf branch, 2026-12-07). Needs root, wrk, mptcpize, nginx, haproxy, strace, perf.
#   profile-relay.sh relay|haproxy [seconds] cpu|strace|one|perf|raw
#   cpu:    3 rounds: conn/s, CPU µs per connection (/proc utime+stime), context switches per connection
#   strace: strace -f -c over one run, syscalls per connection;  one: strace of 3 single curl connections
#   perf:   perf record -g (cpu-clock); with PERFMAP=1 WXE=0 the JIT frames get names
# DLL=path/proxysel-lab.dll picks the build (A/B: copy two builds' bin folders); WARM=seconds of untimed warm-up (JIT);
# RELAYENV="DOTNET_X=Y" adds runtime settings. Figures vary with the machine's load: it is printed with each round.
set -u
WORK=${WORK:-/tmp/psel-profile}; mkdir -p $WORK/www; echo ok > $WORK/www/small
SUBJ=$1; SECS=${2:-5}; MODE=${3:-cpu}
DLL=${DLL:-$(dirname "$0")/../ProxySelection.LabTool/bin/Release/net10.0/proxysel-lab.dll}
NS=rpprof
ip netns del $NS 2>/dev/null; ip netns add $NS; ip -n $NS link set lo up
ip netns exec $NS sysctl -q net.mptcp.enabled=1 net.mptcp.blackhole_timeout=0 net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1
cat > $WORK/nginx.conf <<N
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18080 backlog=4096; root $WORK/www; } }
N
cat > $WORK/haproxy.cfg <<N
global
    maxconn 9000
defaults
    mode tcp
    timeout connect 10s
    timeout client 1h
    timeout server 1h
frontend bench
    bind 127.0.0.1:18000
    default_backend upstream
backend upstream
    server s1 127.0.0.1:18080
N
cleanup() { kill $SP $NP 2>/dev/null; sleep 0.5; ip netns del $NS 2>/dev/null; }
trap cleanup EXIT
ip netns exec $NS nginx -c $WORK/nginx.conf & NP=$!
if [ $SUBJ = relay ]; then
  ip netns exec $NS env DOTNET_PerfMapEnabled=${PERFMAP:-0} DOTNET_EnableWriteXorExecute=${WXE:-1} ${RELAYENV:-} dotnet $DLL bench relay --listen 127.0.0.1:18000 --upstream 127.0.0.1:18080 --client-protocol mptcp > $WORK/relay.out 2>&1 & SP=$!
else
  ip netns exec $NS mptcpize run haproxy -db -f $WORK/haproxy.cfg > $WORK/haproxy.out 2>&1 & SP=$!
fi
for i in $(seq 50); do ip netns exec $NS bash -c '</dev/tcp/127.0.0.1/18000' 2>/dev/null && break; sleep 0.2; done
# the real pid (dotnet/haproxy, not ip/mptcpize)
PID=$(pgrep -P $SP | head -1); [ -z "$PID" ] && PID=$SP
while c=$(pgrep -P $PID | head -1); [ -n "$c" ] && [ "$(cat /proc/$PID/comm)" != dotnet ] && [ "$(cat /proc/$PID/comm)" != haproxy ]; do PID=$c; done
echo "subject $SUBJ pid $PID comm $(cat /proc/$PID/comm) load $(cut -d' ' -f1-3 /proc/loadavg)"
wrkrun() { ip netns exec $NS mptcpize run wrk -t1 -c16 --timeout 2s -H "Connection: close" http://127.0.0.1:18000/small "$@"; }
WRK=wrkrun
$WRK -d${WARM:-2}s > /dev/null  # warm up (JIT)
ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
csw() { cat /proc/$PID/task/*/status 2>/dev/null | awk '/ctxt_switches/{s+=$2} END{print s}'; }
[ $MODE = raw ] && { $WRK -d${SECS}s; exit; }
case $MODE in
 one)
  TIDS=$(ls /proc/$PID/task | tr '\n' ',' | sed 's/,$//')
  strace -f -p $TIDS -o $WORK/one-$SUBJ.txt & ST=$!
  sleep 1; for i in 1 2 3; do ip netns exec $NS mptcpize run curl -s -o /dev/null http://127.0.0.1:18000/small; done; sleep 0.5; kill -INT $ST; wait $ST
  grep -v -E "epoll_wait\(.*(<unfinished|resumed> .*= 0$)|futex|restart_syscall" $WORK/one-$SUBJ.txt | sed -E "s/^[0-9]+ +//" ;;
 cpu)
  for r in 1 2 3; do
   c0=$(csw); t0=$(ticks); out=$($WRK -d${SECS}s); t1=$(ticks); c1=$(csw)
   req=$(echo "$out" | awk '/requests in/{print $1}')
   echo "round $r: $req conns, $(echo "$out" | awk '/Requests\/sec/{print $2}') conn/s, CPU $(( (t1-t0)*10000*1000/req/1000 )) us/conn (ticks $((t1-t0))) csw/conn $(echo "scale=2; ($c1-$c0)/$req" | bc) threads $(ls /proc/$PID/task | wc -l) load $(cut -d' ' -f1 /proc/loadavg)"
  done;;
 strace)
  TIDS=$(ls /proc/$PID/task | tr '\n' ',' | sed 's/,$//')
  strace -f -c -p $TIDS -o $WORK/strace-$SUBJ.txt & ST=$!
  sleep 1; out=$($WRK -d${SECS}s); kill -INT $ST; wait $ST
  req=$(echo "$out" | awk '/requests in/{print $1}')
  echo "$req connections under strace"; cat $WORK/strace-$SUBJ.txt
  awk -v n=$req '$1 ~ /^[0-9.]+$/ && NF>=5 {c=$4; name=$NF; printf "%-20s %8.2f /conn\n", name, c/n} /total/{printf "TOTAL %8.2f /conn\n", $3/n}' $WORK/strace-$SUBJ.txt;;
 perf)
  perf record -F 2000 -e cpu-clock -g -p $PID -o $WORK/perf-$SUBJ.data -- sleep $((SECS+1)) > /dev/null 2>&1 & PP=$!
  sleep 0.5; out=$($WRK -d${SECS}s); wait $PP
  echo "$out" | grep -E "requests in|Requests/sec";;
esac
