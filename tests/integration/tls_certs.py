"""Test certificates, made with the openssl command at test time (nothing
secret is checked in): a CA, server certificates, client certificates,
and a second CA that nobody trusts.

    certs = make_certs(tmpdir)
    certs["ca"], certs["server"], certs["server_key"], ...

Every key is EC P-256 (fast to make; every client here speaks it).
"""
import os
import subprocess


def _run(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr}")


def _key(d, name):
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", f"{name}.key", cwd=d)


def _ca(d, name, cn):
    _key(d, name)
    _run("req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-days", "2",
         "-sha256", "-out", f"{name}.pem",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d, name, ca, subj, san=None, client=False):
    _key(d, name)
    _run("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out", f"{name}.csr", cwd=d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        if san:
            f.write(f"subjectAltName={san}\n")
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext, "-out", f"{name}.pem",
         cwd=d)


def make_certs(d, sni_domain="kafka.test"):
    """Writes the certificates into d and returns their paths by name:
    ca (trusted), rogue_ca (trusted by nobody), server (localhost,
    127.0.0.1, *.<sni_domain>), wrong_host (other.example only), rogue_server
    (localhost, by rogue_ca), alice and bob (clients of ca; alice's SAN is
    alice.clients.test), carol (a client of ca in OU=Contractors), mallory
    (a client of rogue_ca). Each name X has
    X (the PEM certificate) and X_key."""
    os.makedirs(d, exist_ok=True)
    _ca(d, "ca", "kwire test CA")
    _ca(d, "rogue_ca", "rogue CA")
    _leaf(d, "server", "ca", "/CN=localhost",
          f"DNS:localhost,IP:127.0.0.1,DNS:*.{sni_domain},DNS:{sni_domain}")
    _leaf(d, "wrong_host", "ca", "/CN=other.example", "DNS:other.example")
    _leaf(d, "rogue_server", "rogue_ca", "/CN=localhost", "DNS:localhost,IP:127.0.0.1")
    _leaf(d, "alice", "ca", "/C=US/O=Example/OU=ServiceUsers/CN=alice",
          "DNS:alice.clients.test", client=True)
    _leaf(d, "bob", "ca", "/C=US/O=Example/OU=ServiceUsers/CN=bob", "DNS:bob.clients.test",
          client=True)
    _leaf(d, "carol", "ca", "/C=US/O=Example/OU=Contractors/CN=carol", client=True)
    _leaf(d, "mallory", "rogue_ca", "/O=Rogue/CN=mallory", client=True)
    out = {}
    for n in ("ca", "rogue_ca", "server", "wrong_host", "rogue_server", "alice", "bob",
              "carol", "mallory"):
        out[n] = os.path.join(d, f"{n}.pem")
        out[n + "_key"] = os.path.join(d, f"{n}.key")
    return out
