#!/usr/bin/env python3
"""Independent check of the draft's Appendix A: rebuilds every MP_PROXY vector from the draft's own tables
with Python's hmac module (no project code), following Sections 5.2 and 9.2. Exit status 0 when all match.
Usage: spec/vectors/check_vectors.py [path/to/draft.md]"""
import hashlib, hmac, ipaddress, os, re, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, '..', 'draft-proxyselection-mptcp-proxy-selection.md')
text = open(path, encoding='utf-8').read()
appendix = text[text.index('\n## Appendix A.'):text.index('\n## Appendix B.')]
keys = {'1': bytes(range(0, 32)), '2': bytes(range(0x20, 0x40))}
kinds = {'Probe': 1, 'Claim': 2, 'Defer': 3, 'Offer': 4, 'Upgrade': 5}
label = b'ProxySelection MP_PROXY v1'

def cells(line):
    return [c.strip().strip('`') for c in line.strip().strip('|').split('|')]

flows = {}
for line in appendix.splitlines():
    c = cells(line) if line.startswith('| v') else None
    if c and len(c) == 7:
        flows[c[0]] = (ipaddress.ip_address(c[1]), ipaddress.ip_address(c[2]), int(c[3]), int(c[4]),
                       int(c[5], 16), int(c[6], 16) if c[6].startswith('0x') else None)

failures = count = 0
for line in appendix.splitlines():
    if not line.startswith('| `'):
        continue
    name, form, msg, prio, pid, flow, keyid, want = cells(line)
    count += 1
    if form == 'presence':
        got = bytes([30, 4, 0xF1, 0xA5])
    else:
        length = 16 if form == 'long' else 8
        head = bytes([30, length, 0xF1, 0xA5, 0x80 | kinds[msg] << 4 | int(prio), int(pid)])
        if form == 'long':
            head += bytes([int(keyid), 0])
        client, server, cport, sport, isn, isn2 = flows[flow]
        m = label + bytes([2 if isn2 is not None else 1]) + head + bytes([client.version])
        m += client.packed + server.packed + struct.pack('>HHI', cport, sport, isn)
        if isn2 is not None:
            m += struct.pack('>I', isn2)
        tag = hmac.new(keys[keyid], m, hashlib.sha256).digest()[:length - len(head)]
        got = head + tag
    ok = got.hex() == want
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name:28} {got.hex()}")
print(f"{count} vectors, {failures} failures")
sys.exit(1 if failures or count == 0 else 0)
