#!/usr/bin/env python3
"""Minimal MPTCP server/client for the option-space measurement (spec Section 5.1).
Usage: mptcp_peer.py server ADDR PORT | mptcp_peer.py client ADDR PORT SRCADDR"""
import socket, sys, time

IPPROTO_MPTCP = 262
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ':' in addr else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM, IPPROTO_MPTCP)
if mode == 'server':
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(8)
    s.settimeout(10)
    c, _ = s.accept()
    c.settimeout(10)
    while c.recv(4096):
        pass
    c.close()
else:
    s.settimeout(5)
    s.bind((sys.argv[4], 0))  # the initial subflow from the first address; the endpoint adds the second
    s.connect((addr, port))
    s.sendall(b'x' * 1000)
    time.sleep(1.5)  # leave the path manager time to open the MP_JOIN subflow
    s.sendall(b'y' * 1000)
    s.close()
