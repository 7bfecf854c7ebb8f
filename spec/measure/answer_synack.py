#!/usr/bin/env python3
"""Answers the first SYN to PORT with a hand-made MP_CAPABLE v1 SYN/ACK that also carries MP_PROXY (short
form), as a holder does toward its client (spec Section 4.1). Run in the server namespace, with the kernel's
own RSTs dropped. Usage: answer_synack.py PORT OPTION_HEX|nompc"""
import os, random, socket, struct, sys

# OPTION_HEX "nompc" sends a SYN/ACK without MP_CAPABLE: the control case, where the client must fall back.
port, no_mpc = int(sys.argv[1]), sys.argv[2] == 'nompc'
mp_proxy = b'' if no_mpc else bytes.fromhex(sys.argv[2])

def csum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack(f'!{len(data) // 2}H', data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def option(opts, kind):
    i = 0
    while i < len(opts):
        if opts[i] == 0:
            return None
        if opts[i] == 1:
            i += 1
            continue
        if opts[i] == kind:
            return opts[i:i + opts[i + 1]]
        i += opts[i + 1]
    return None

rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
rx.settimeout(8)
while True:
    pkt, _ = rx.recvfrom(65535)
    ihl = (pkt[0] & 0x0f) * 4
    src, dst = pkt[12:16], pkt[16:20]
    tcp = pkt[ihl:]
    sport, dport, seq = struct.unpack('!HHI', tcp[:8])
    if dport == port and tcp[13] & 0x12 == 0x02:
        break
opts_in = tcp[20:(tcp[12] >> 4) * 4]
ts = option(opts_in, 8)
tsval = struct.unpack('!I', ts[2:6])[0] if ts else 0
# MSS, SACK_PERM, TS, NOP, WS, MP_CAPABLE v1 SYN/ACK (flags H, sender key), MP_PROXY: the kernel's SYN/ACK + 8.
opts = bytes([2, 4, 0x05, 0xb4, 4, 2, 8, 10]) + struct.pack('!II', 12345, tsval) + bytes([1, 3, 3, 7])
if not no_mpc:
    opts += bytes([30, 12, 0x01, 0x01]) + os.urandom(8) + mp_proxy
opts += b'\0' * (-len(opts) % 4)
hdr = struct.pack('!HHIIBBHHH', dport, sport, random.getrandbits(32), seq + 1, (5 + len(opts) // 4) << 4, 0x12, 65160, 0, 0) + opts
pseudo = dst + src + struct.pack('!BBH', 0, 6, len(hdr))
hdr = hdr[:16] + struct.pack('!H', csum(pseudo + hdr)) + hdr[18:]
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
tx.sendto(hdr, (socket.inet_ntoa(src), 0))
print(f"answered SYN from {socket.inet_ntoa(src)}:{sport} with {len(opts)} option bytes")
