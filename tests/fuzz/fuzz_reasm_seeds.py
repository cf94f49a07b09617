# Generates the fuzz_reasm seed corpus (tiny pcaps):
#   python3 tests/fuzz/fuzz_reasm_seeds.py tests/fuzz/corpus/fuzz_reasm
import struct, socket, sys, os
out = sys.argv[1]

def tcp(sp, dp, seq, ack, flags, data=b""):
    return struct.pack(">HHIIBBHHH", sp, dp, seq & 0xffffffff, ack & 0xffffffff, 5 << 4, flags, 65535, 0, 0) + data

def ip4(src, dst, body, proto=6, ident=1, foff=0x4000):
    h = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, foff, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h + body

def ip6(src, dst, nh, ext, body):
    return struct.pack(">IHBB16s16s", 6 << 28, len(ext) + len(body), nh, 64,
                       socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)) + ext + body

def eth(ipb, v6=False, vlans=()):
    h = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"
    for i, v in enumerate(vlans):
        h += struct.pack(">HH", 0x88a8 if (i == 0 and len(vlans) > 1) else 0x8100, v)
    return h + struct.pack(">H", 0x86dd if v6 else 0x0800) + ipb

def sll(ipb):
    return struct.pack(">HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800) + ipb

def pcap(linktype, frames, nano=False):
    b = struct.pack("<IHHiIII", 0xa1b23c4d if nano else 0xa1b2c3d4, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        b += struct.pack("<IIII", 1700000000 + i // 4, (i % 4) * 1000, len(f), len(f)) + f
    return b

S, A, P, F, R = 2, 16, 8, 1, 4
C, D = "10.0.0.1", "10.0.0.2"
def conv(mk, reorder=False, lose=False):
    fr = [mk(C, D, tcp(40000, 9092, 100, 0, S)), mk(D, C, tcp(9092, 40000, 5000, 101, S | A)),
          mk(C, D, tcp(40000, 9092, 101, 5001, A))]
    segs = [mk(C, D, tcp(40000, 9092, 101 + 4 * i, 5001, A | P, b"req%d" % i)) for i in range(4)]
    if reorder:
        segs = [segs[2], segs[0], segs[3], segs[1], segs[1]]
    if lose:
        del segs[1]
    fr += segs
    fr += [mk(D, C, tcp(9092, 40000, 5001, 117, A | P, b"response")),
           mk(C, D, tcp(40000, 9092, 117, 5009, A | F)), mk(D, C, tcp(9092, 40000, 5009, 118, A | F))]
    return fr

e4 = lambda s, d, t: eth(ip4(s, d, t))
open(os.path.join(out, "inorder.pcap"), "wb").write(pcap(1, conv(e4)))
open(os.path.join(out, "reorder.pcap"), "wb").write(pcap(1, conv(e4, reorder=True), nano=True))
open(os.path.join(out, "lost.pcap"), "wb").write(pcap(1, conv(lambda s, d, t: eth(ip4(s, d, t), vlans=(10, 20)), lose=True)))
open(os.path.join(out, "sll.pcap"), "wb").write(pcap(113, conv(lambda s, d, t: sll(ip4(s, d, t)))))
open(os.path.join(out, "raw.pcap"), "wb").write(pcap(101, conv(lambda s, d, t: ip4(s, d, t))))
# IPv4 fragments (out of order) and an IPv6 flow with extension headers and fragments
t = tcp(40000, 9092, 1, 1, A | P, bytes(range(65, 65 + 60)))
frs = [ip4(C, D, t[0:40], ident=9, foff=0x2000), ip4(C, D, t[40:], ident=9, foff=5)]
six = []
ext = struct.pack(">BB6s", 60, 0, b"\0" * 6) + struct.pack(">BB6s", 6, 0, b"\0" * 6)
six.append(eth(ip6("2001:db8::1", "2001:db8::2", 0, ext, t), v6=True))
fh1 = struct.pack(">BBHI", 6, 0, 0 | 1, 77)
fh2 = struct.pack(">BBHI", 6, 0, 40, 77)
six.append(eth(ip6("2001:db8::1", "2001:db8::2", 44, fh2, t[40:]), v6=True))
six.append(eth(ip6("2001:db8::1", "2001:db8::2", 44, fh1, t[:40]), v6=True))
open(os.path.join(out, "frags.pcap"), "wb").write(pcap(1, [eth(f) for f in reversed(frs)] + six))
# a tiny pcapng: SHB, IDB, 2 EPBs
def blk(t, body):
    pad = (-len(body)) % 4
    return struct.pack("<II", t, 12 + len(body) + pad) + body + b"\0" * pad + struct.pack("<I", 12 + len(body) + pad)
ng = blk(0x0a0d0d0a, struct.pack("<IHHq", 0x1a2b3c4d, 1, 0, -1)) + blk(1, struct.pack("<HHI", 1, 0, 65535))
for f in conv(e4)[:5]:
    ng += blk(6, struct.pack("<IIIII", 0, 0, 1000, len(f), len(f)) + f)
open(os.path.join(out, "small.pcapng"), "wb").write(ng)
# pcapng with interfaces of different link types (Ethernet, then Linux SLL)
ng = blk(0x0a0d0d0a, struct.pack("<IHHq", 0x1a2b3c4d, 1, 0, -1)) + blk(1, struct.pack("<HHI", 1, 0, 65535)) + blk(1, struct.pack("<HHI", 113, 0, 65535))
f1 = eth(ip4(C, D, tcp(40000, 9092, 1, 1, A | P, b"abc")))
f2 = sll(ip4(C, D, tcp(40000, 9092, 4, 1, A | P, b"def")))
ng += blk(6, struct.pack("<IIIII", 0, 0, 1000, len(f1), len(f1)) + f1)
ng += blk(6, struct.pack("<IIIII", 1, 0, 2000, len(f2), len(f2)) + f2)
open(os.path.join(out, "multilink.pcapng"), "wb").write(ng)
