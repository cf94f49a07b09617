#!/usr/bin/python3
"""Writes the TCP conversations of a capture as a .conv text file.

usage: pcap2conv.py CAPTURE.pcapng BROKER_PORT[,PORT...] > OUT.conv

tshark reassembles each TCP stream (-z follow,tcp,raw,N); this script only
reformats what tshark prints, so the unit tests can replay the bytes with no
pcap code. Format (docs/test-data.md):

  # comment lines
  conn N CLIENT_ADDR:PORT BROKER_ADDR:PORT
  C <hex>     bytes client -> broker, one line per TCP segment (payload)
  S <hex>     bytes broker -> client
  end

in capture order. A direction is decided by the broker ports given, not by
who spoke first.
"""

import subprocess
import sys


def streams(pcap):
    out = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "tcp.stream"],
                         check=True, capture_output=True, text=True).stdout
    return sorted({int(x) for x in out.split() if x.strip()})


def follow(pcap, ids):
    args = ["tshark", "-r", pcap, "-q"]
    for i in ids:
        args += ["-z", "follow,tcp,raw,%d" % i]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def main(pcap, ports):
    ports = {int(p) for p in ports.split(",")}
    ids = streams(pcap)
    w = sys.stdout
    w.write("# kwire conversation file: %s\n" % pcap.rsplit("/", 1)[-1])
    if not ids:
        return
    text = follow(pcap, ids)
    blocks = text.split("===================================================================")
    convs = []
    for b in blocks:
        lines = b.split("\n")
        nodes = {}
        sid = None
        data = []
        for ln in lines:
            if ln.startswith("Filter: tcp.stream eq "):
                sid = int(ln.split()[-1])
            elif ln.startswith("Node 0: ") or ln.startswith("Node 1: "):
                nodes[int(ln[5])] = ln[8:].strip()
            elif ln.startswith("\t") and ln.strip():
                data.append((1, ln.strip()))
            elif ln.strip() and all(c in "0123456789abcdef" for c in ln.strip()):
                data.append((0, ln.strip()))
        if sid is None:
            continue
        if len(nodes) != 2:
            sys.exit("pcap2conv: stream %d: no endpoints in tshark output" % sid)
        # Node 0 is whoever tshark saw first; name directions by port.
        port0 = int(nodes[0].rsplit(":", 1)[1])
        port1 = int(nodes[1].rsplit(":", 1)[1])
        if port1 in ports:
            client_node = 0
        elif port0 in ports:
            client_node = 1
        else:
            sys.exit("pcap2conv: stream %d: no broker port in %s" % (sid, nodes))
        conv = ["conn %d %s %s\n" % (sid, nodes[client_node], nodes[1 - client_node])]
        for node, hx in data:
            conv.append("%s %s\n" % ("C" if node == client_node else "S", hx))
        conv.append("end\n")
        convs.append((sid, conv))
    if len(convs) != len(ids):
        sys.exit("pcap2conv: %d streams in the capture, %d followed" % (len(ids), len(convs)))
    # tshark prints the follow blocks in no useful order; stream ids number
    # connections in the order of their first packet.
    for _, conv in sorted(convs):
        w.writelines(conv)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
