#!/usr/bin/env bash
# The router's kernel side once, by hand (what resilient-mirror keeps up to date from BIRD's table 100):
# one nexthop object per instance, a resilient group over them, the served prefix through the group.
set -eu
ip nexthop replace id 101 via 198.18.17.2 dev inst1
ip nexthop replace id 102 via 198.18.18.2 dev inst2
ip nexthop replace id 103 via 198.18.19.2 dev inst3
# idle_timer: a bucket moves to a new instance only after carrying nothing for that long, so adding an instance does
# not move established flows (idle_timer 0 would move them at once).
ip nexthop add id 100 group 101/102/103 type resilient buckets 64 idle_timer 120
ip route replace 198.18.64.0/24 nhid 100
