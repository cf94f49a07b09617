"""A scripted SASL-speaking Kafka broker for the tests (librdkafka's mock
cluster speaks no SASL).

It answers ApiVersions (v0-3), SaslHandshake (v0, or v0-1 with
SaslAuthenticate v0-1 when sasl_authenticate=True), Metadata v0-1 (itself as
broker 1, one topic), and authenticates PLAIN (RFC 4616) and SCRAM-SHA-256/512
(RFC 5802) for real: a wrong password closes the connection, as Kafka does.
After SaslHandshake v0 the tokens travel as bare size-prefixed frames (KIP-43).

Every connection's bytes are recorded in order ((dir, bytes), dir 'c' for the
client's, 's' for the broker's), and write_pcap() turns them into a capture
(Ethernet/IPv4/TCP) that kwire's analyzer can read: the capture holds the
real clients' bytes.
"""
import base64
import hashlib
import hmac
import os
import socket
import struct
import threading

TOPIC = "sasl-topic"


def _str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Scram:
    def __init__(self, users, hname):
        self.users = users
        self.h = hname
        self.step = 0
        self.done = False

    def _hmac(self, key, msg):
        return hmac.new(key, msg, self.h).digest()

    def next(self, tok):
        if self.step == 0:
            parts = tok.decode().split(",")
            # gs2-header "n,," then n=user,r=nonce[,extensions]
            self.first_bare = ",".join(parts[2:])
            attrs = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            if user not in self.users:
                return None
            self.pw = self.users[user].encode()
            self.salt = os.urandom(16)
            self.iters = 4096
            self.nonce = attrs["r"] + base64.b64encode(os.urandom(12)).decode()
            self.server_first = "r=%s,s=%s,i=%d" % (self.nonce, base64.b64encode(self.salt).decode(),
                                                    self.iters)
            self.step = 1
            return self.server_first.encode()
        if self.step == 1:
            msg = tok.decode()
            without_proof, proof = msg.rsplit(",p=", 1)
            salted = hashlib.pbkdf2_hmac(self.h, self.pw, self.salt, self.iters)
            client_key = self._hmac(salted, b"Client Key")
            stored = hashlib.new(self.h, client_key).digest()
            auth_msg = ",".join([self.first_bare, self.server_first, without_proof]).encode()
            sig = self._hmac(stored, auth_msg)
            want = bytes(a ^ b for a, b in zip(client_key, sig))
            if base64.b64decode(proof) != want:
                return None
            server_key = self._hmac(salted, b"Server Key")
            self.step = 2
            self.done = True
            return b"v=" + base64.b64encode(self._hmac(server_key, auth_msg))
        return None


class _Plain:
    def __init__(self, users):
        self.users = users
        self.done = False

    def next(self, tok):
        parts = tok.split(b"\0")
        if len(parts) != 3 or self.users.get(parts[1].decode()) != parts[2].decode():
            return None
        self.done = True
        return b""


class SaslBroker:
    def __init__(self, users, sasl_authenticate=False):
        self.users = users
        self.v1 = sasl_authenticate
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # one list of (dir, bytes) per connection
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = []
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._serve, args=(c, rec), daemon=True).start()

    # ---- one connection ----
    def _serve(self, c, rec):
        mech = None  # the SASL v0 exchange in progress, or None
        try:
            while True:
                head = self._readn(c, 4)
                if head is None:
                    return
                n = struct.unpack(">i", head)[0]
                body = self._readn(c, n)
                if body is None:
                    return
                with self.lock:
                    rec.append(("c", head + body))
                if mech is not None:
                    out = mech.next(body)
                    if out is None:
                        return
                    self._send(c, rec, struct.pack(">i", len(out)) + out)
                    if mech.done:
                        mech = None
                    continue
                reply, mech = self._request(body)
                if reply is None:
                    return
                self._send(c, rec, reply)
        finally:
            c.close()

    @staticmethod
    def _readn(c, n):
        b = b""
        while len(b) < n:
            try:
                x = c.recv(n - len(b))
            except OSError:
                return None
            if not x:
                return None
            b += x
        return b

    def _send(self, c, rec, b):
        with self.lock:
            rec.append(("s", b))
        c.sendall(b)

    def _mech(self, name):
        if name == "PLAIN":
            return _Plain(self.users)
        if name in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            return _Scram(self.users, "sha256" if name.endswith("256") else "sha512")
        return None

    def _request(self, body):
        key, ver, corr = struct.unpack(">hhi", body[:8])
        cl = struct.unpack(">h", body[8:10])[0]
        pos = 10 + max(cl, 0)
        flexible = key == 18 and ver >= 3
        if flexible:
            pos += 1  # an empty tagged-field section
        req = body[pos:]
        hdr = struct.pack(">i", corr)
        mech = None
        if key == 18:
            apis = [(18, 0, 3), (3, 0, 1), (17, 0, 1 if self.v1 else 0)]
            if self.v1:
                apis.append((36, 0, 1))
            if ver >= 3:
                out = struct.pack(">hB", 0, len(apis) + 1)
                for a in apis:
                    out += struct.pack(">hhhB", *a, 0)
                out += struct.pack(">iB", 0, 0)
            else:
                out = struct.pack(">hi", 0, len(apis))
                for a in apis:
                    out += struct.pack(">hhh", *a)
                if ver >= 1:
                    out += struct.pack(">i", 0)
        elif key == 17:
            name = req[2:2 + struct.unpack(">h", req[:2])[0]].decode()
            names = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
            ok = name in names
            out = struct.pack(">hi", 0 if ok else 33, len(names)) + b"".join(_str(n) for n in names)
            if ok and ver == 0:
                mech = self._mech(name)
            elif ok:
                self.pending = self._mech(name)
        elif key == 36:
            n = struct.unpack(">i", req[:4])[0]
            tok = req[4:4 + n]
            m = getattr(self, "pending", None)
            reply = m.next(tok) if m else None
            if reply is None:
                out = struct.pack(">h", 58) + _str("Authentication failed") + struct.pack(">i", 0)
            else:
                out = struct.pack(">hh", 0, -1) + struct.pack(">i", len(reply)) + reply
            if ver >= 1:
                out += struct.pack(">q", 0)
        elif key == 3:
            out = struct.pack(">i", 1) + struct.pack(">i", 1) + _str("127.0.0.1") + \
                struct.pack(">i", self.port)
            if ver >= 1:
                out += struct.pack(">h", -1) + struct.pack(">i", 1)  # rack, controller
            out += struct.pack(">i", 1) + struct.pack(">h", 0) + _str(TOPIC)
            if ver >= 1:
                out += b"\0"  # is_internal
            out += struct.pack(">i", 1) + struct.pack(">hii", 0, 0, 1)
            out += struct.pack(">ii", 1, 1) + struct.pack(">ii", 1, 1)
        else:
            return None, None
        return struct.pack(">i", len(hdr) + len(out)) + hdr + out, mech


# ---- a capture of the recorded conversations ----

def _csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(">%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def write_pcap(path, conns, server_port=9092):
    """Each recorded connection as one TCP flow 10.0.0.1:(40000+i) ->
    10.0.0.2:server_port, with handshake and FIN, segments of at most 1400
    bytes, one millisecond apart."""
    cli, srv = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    out = [struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)]
    t = [1700000000 * 1000000]

    def pkt(src, dst, sp, dp, seq, ack, flags, data=b""):
        tcp = struct.pack(">HHIIBBHHH", sp, dp, seq & 0xffffffff, ack & 0xffffffff, 5 << 4, flags,
                          65535, 0, 0) + data
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack(">H", _csum(ip)) + ip[12:]
        frame = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00" + ip + tcp
        t[0] += 1000
        out.append(struct.pack("<IIII", t[0] // 1000000, t[0] % 1000000, len(frame), len(frame)) +
                   frame)

    for i, rec in enumerate(conns):
        cp = 40000 + i
        cs, ss = 1000, 5000
        pkt(cli, srv, cp, server_port, cs, 0, 0x02)
        pkt(srv, cli, server_port, cp, ss, cs + 1, 0x12)
        cs += 1
        ss += 1
        pkt(cli, srv, cp, server_port, cs, ss, 0x10)
        for d, data in rec:
            for off in range(0, len(data), 1400):
                seg = data[off:off + 1400]
                if d == "c":
                    pkt(cli, srv, cp, server_port, cs, ss, 0x18, seg)
                    cs += len(seg)
                else:
                    pkt(srv, cli, server_port, cp, ss, cs, 0x18, seg)
                    ss += len(seg)
        pkt(cli, srv, cp, server_port, cs, ss, 0x11)
        pkt(srv, cli, server_port, cp, ss, cs + 1, 0x11)
        pkt(cli, srv, cp, server_port, cs + 1, ss + 1, 0x10)
    with open(path, "wb") as f:
        f.write(b"".join(out))


# ---- a scripted client: SASL v0 under one client id, requests under another ----

def _req(key, ver, corr, client_id, body=b""):
    h = struct.pack(">hhi", key, ver, corr) + _str(client_id)
    return struct.pack(">i", len(h) + len(body)) + h + body


def _read_frame(s):
    head = SaslBroker._readn(s, 4)
    if head is None:
        raise RuntimeError("connection closed")
    body = SaslBroker._readn(s, struct.unpack(">i", head)[0])
    if body is None:
        raise RuntimeError("connection closed")
    return body


def plain_then_other_client_id(host, port, user, password, auth_id="auth-client",
                               other_id="other-client"):
    """SaslHandshake v0 PLAIN under auth_id, then Metadata v1 under
    other_id. Returns the (host, port) list of the Metadata response's
    brokers."""
    s = socket.create_connection((host, port), timeout=10)
    try:
        s.sendall(_req(17, 0, 1, auth_id, _str("PLAIN")))
        r = _read_frame(s)
        if struct.unpack(">h", r[4:6])[0] != 0:
            raise RuntimeError("SaslHandshake failed")
        tok = b"\0" + user.encode() + b"\0" + password.encode()
        s.sendall(struct.pack(">i", len(tok)) + tok)
        if _read_frame(s) != b"":
            raise RuntimeError("PLAIN rejected")
        s.sendall(_req(3, 1, 2, other_id, struct.pack(">i", -1)))
        r = _read_frame(s)
        if struct.unpack(">i", r[:4])[0] != 2:
            raise RuntimeError("Metadata response with the wrong correlation id")
        n = struct.unpack(">i", r[4:8])[0]
        pos, brokers = 8, []
        for _ in range(n):
            pos += 4
            hl = struct.unpack(">h", r[pos:pos + 2])[0]
            h = r[pos + 2:pos + 2 + hl].decode()
            pos += 2 + hl
            p = struct.unpack(">i", r[pos:pos + 4])[0]
            pos += 4
            rl = struct.unpack(">h", r[pos:pos + 2])[0]
            pos += 2 + max(rl, 0)
            brokers.append((h, p))
        return brokers
    finally:
        s.close()
