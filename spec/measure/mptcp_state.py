#!/usr/bin/env python3
"""Connects with an MPTCP socket and reports whether the connection runs MPTCP or fell back to TCP
(MPTCP_INFO fails with EOPNOTSUPP after a fallback). Usage: mptcp_state.py ADDR PORT"""
import errno, socket, sys

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
try:
    s.getsockopt(284, 1, 256)  # SOL_MPTCP, MPTCP_INFO
    print("connection: MPTCP")
except OSError as e:
    print("connection: fell back to TCP" if e.errno == errno.EOPNOTSUPP else f"MPTCP_INFO: {e}")
s.close()
