#!/usr/bin/env python3
"""Sends one hand-made MP_CAPABLE v1 SYN that also carries an MP_PROXY option (spec Section 4.1), to check
that a stock stack ignores the unknown MPTCP subtype. Usage: inject_syn.py SRC DST DPORT OPTION_HEX"""
import os, random, socket, struct, sys

src, dst, dport, mp_proxy = sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])

def csum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack(f'!{len(data) // 2}H', data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

# The options Linux puts on an MP_CAPABLE SYN (MSS, SACK_PERM, TS, NOP, WS, MP_CAPABLE v1), then MP_PROXY.
kernel = bytes([2, 4, 0x05, 0xb4, 4, 2, 8, 10]) + struct.pack('!II', 1, 0) + bytes([1, 3, 3, 7])
mp_capable = bytes([30, 4, 0x01, 0x01])
# MP_PROXY_FIRST=1 puts MP_PROXY before MP_CAPABLE (the wire order a rewriter may choose).
opts = kernel + (mp_proxy + mp_capable if os.environ.get('MP_PROXY_FIRST') == '1' else mp_capable + mp_proxy)
opts += b'\0' * (-len(opts) % 4)
sport, isn = random.randint(20000, 60000), 0x01020304
tcp = struct.pack('!HHIIBBHHH', sport, dport, isn, 0, (5 + len(opts) // 4) << 4, 0x02, 64240, 0, 0) + opts
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack('!H', csum(pseudo + tcp)) + tcp[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.sendto(tcp, (dst, 0))
print(f"sent SYN {src}:{sport} -> {dst}:{dport} with {len(opts)} option bytes")
