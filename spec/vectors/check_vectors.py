#!/usr/bin/env python3
"""Independent check of the draft's Appendix A: rebuilds every MP_PROXY vector from the draft's own tables
with Python's hmac module (no project code), following Sections 5.2 and 9.2, and checks the two worked MAC
inputs byte by byte and the length of M that Section 9.2 gives (36 + o + 2a, plus 4 on a SYN/ACK).
Exit status 0 when all match. Usage: spec/vectors/check_vectors.py [path/to/draft.md]"""
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

def tag_input(form, msg, prio, pid, flow, keyid):
    """M of Section 9.2 and the option bytes it covers."""
    length = 16 if form == 'long' else 8
    head = bytes([30, length, 0xF1, 0xA5, 0x80 | kinds[msg] << 4 | int(prio), int(pid)])
    if form == 'long':
        head += bytes([int(keyid), 0])
    client, server, cport, sport, isn, isn2 = flows[flow]
    m = label + bytes([2 if isn2 is not None else 1]) + head + bytes([client.version])
    m += client.packed + server.packed + struct.pack('>HHI', cport, sport, isn)
    if isn2 is not None:
        m += struct.pack('>I', isn2)
    a = len(client.packed)
    if len(m) != 36 + len(head) + 2 * a + (4 if isn2 is not None else 0):
        sys.exit(f'M is {len(m)} bytes, not what Section 9.2 says')
    return head, m

vectors = {}
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
        head, m = tag_input(form, msg, prio, pid, flow, keyid)
        vectors[name] = (keyid, m)
        tag = hmac.new(keys[keyid], m, hashlib.sha256).digest()[:length - len(head)]
        got = head + tag
    ok = got.hex() == want
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name:28} {got.hex()}")

# Worked MACs: the indented hex before the comment column is M; then the full MAC and the tag.
worked = re.findall(r"Worked MAC, `([a-z0-9-]+)`[^\n]*\n\n((?:    [0-9a-f][^\n]*\n)+)\n    HMAC-SHA256\(key \d, M\) = ([0-9a-f]{64})", appendix)
for name, block, mac in worked:
    hexin = ''.join(re.split(r' {2,}', l.strip())[0].replace(' ', '') for l in block.splitlines())
    keyid, m = vectors[name]
    ok = hexin == m.hex() and hmac.new(keys[keyid], m, hashlib.sha256).hexdigest() == mac
    failures += not ok
    count += 1
    print(f"{'ok  ' if ok else 'FAIL'} worked MAC {name:17} {len(m)} bytes")
print(f"{count} checks ({len(worked)} worked MACs), {failures} failures")
sys.exit(1 if failures or count == 0 or len(worked) != 2 else 0)
