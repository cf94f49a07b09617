"""OAUTHBEARER termination and KIP-368 sessions through kwire, with
confluent-kafka (librdkafka) (docs/security.md).

kwire terminates SASL in front of the plaintext mock cluster with a JWKS
file holding an RSA key (RS256) and an EC P-256 key (ES256), made here with
python3-cryptography; confluent-kafka's oauth_cb hands librdkafka JWTs that
python3-jwt signs:

1. a good token (RS256, and ES256) produces and consumes, and its "sub" is
   the principal in the access log;
2. an expired token, a token signed by a key not in the JWKS (with the kid
   of one that is), and a token without "sub" are refused, each with its
   reason in kwire's log and never the token;
3. a deny rule on the principal User:eve refuses her Produce with
   TOPIC_AUTHORIZATION_FAILED;
4. KIP-368: a second kwire gives sessions a 1.5 s lifetime. A producer
   sending for 5 s gets every record delivered; librdkafka 2.12
   re-authenticates on the same connections (re-authentications counted,
   no session expired), librdkafka 2.0.2 (no KIP-368) is closed when its
   session ends and reconnects (expired sessions counted). Then a third
   kwire that authenticates upstream as its own user (upstream_sasl_*)
   re-authenticates its connections to that kwire in time: every record
   delivered, no session expired.
"""
import base64
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check, peer  # noqa: E402
import sasl_util as su  # noqa: E402

try:
    import confluent_kafka
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
except ImportError as e:
    print(f"SKIP: {e.name} not installed (needs: python3-confluent-kafka, python3-jwt, "
          "python3-cryptography, tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

TOPIC = "oa"
RULES = """access:
  - name: eve-no-produce
    match: {api: Produce, principal: "User:eve"}
    deny: TOPIC_AUTHORIZATION_FAILED
"""


def b64u(n, length=None):
    b = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwks(rsa_key, ec_key):
    rn = rsa_key.public_key().public_numbers()
    en = ec_key.public_key().public_numbers()
    return {"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b64u(rn.n),
         "e": b64u(rn.e)},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64u(en.x, 32), "y": b64u(en.y, 32)},
        {"kty": "oct", "kid": "hmac-ignored", "k": "c2VjcmV0"},
    ]}


def token(key, alg, kid, **claims):
    now = int(time.time())
    body = {"sub": "alice", "iat": now, "exp": now + 300}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def oauth_conf(bootstrap, tok, **kw):
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "OAUTHBEARER", "socket.timeout.ms": 10000,
            # librdkafka's own lifetime for the token: in the future even for
            # the expired one, so that kwire is who refuses it
            "oauth_cb": lambda cfg: (tok, time.time() + 300)}
    conf.update(kw)
    return conf


def refused(c, tok, why, secret_parts):
    err = su.confluent_refused(oauth_conf(c.bootstrap, tok), why)
    check("uthentication" in err.str(), f"{why}: {err.str()}")
    time.sleep(0.3)
    log = c.proxy_stderr()
    for part in secret_parts:
        check(part not in log, f"kwire's log shows the token ({why})")
    return log


def eve_denied(c, key):
    from confluent_kafka import Producer
    p = Producer(oauth_conf(c.bootstrap, token(key, "RS256", "rsa-1", sub="eve")))
    res = []
    p.produce(TOPIC, b"eve", partition=0, on_delivery=lambda err, msg: res.append(err))
    p.flush(20)
    check(res and res[0] is not None and res[0].name() == "TOPIC_AUTHORIZATION_FAILED",
          f"eve's Produce: {res}, wanted TOPIC_AUTHORIZATION_FAILED")


def kip368(c, kwire, tmp, creds):
    from confluent_kafka import Producer
    px = su.Proxy(kwire, tmp, "kip368", ["--upstream", c.upstream, "--sasl", "terminate",
                                         "--sasl-credentials", creds,
                                         "--sasl-session-lifetime", "1500"])
    try:
        p = Producer(su.sasl_conf(px.bootstrap, "SCRAM-SHA-256", "alice", "Alice-pw-1"))
        res = []
        # 3.5 s of producing: more than twice the 1.5 s session lifetime.
        end = time.monotonic() + 3.5
        n = 0
        while time.monotonic() < end:
            p.produce(TOPIC, f"s-{n}".encode(), partition=1,
                      on_delivery=lambda err, msg: res.append(err))
            n += 1
            p.poll(0.2)
        p.flush(30)
        check(len(res) == n and not any(res),
              f"KIP-368: {len(res)} of {n} delivered, errors {[str(e) for e in res if e]}")
        reauth = px.metric("kwire_sasl_reauthentications_total")
        expired = px.metric("kwire_sasl_sessions_expired_total")
        print(f"KIP-368 on librdkafka {confluent_kafka.libversion()[0]}: {n} records, "
              f"{reauth:.0f} re-authentications, {expired:.0f} expired sessions")
        if confluent_kafka.libversion()[1] >= 0x020200ff:  # KIP-368 since librdkafka 2.2.0
            check(reauth >= 1, "librdkafka re-authenticated never")
            check(expired == 0, "a re-authenticating client's session expired")
        else:
            check(expired >= 1, "a client that cannot re-authenticate kept its session")
            check("without re-authentication: closing (KIP-368)" in px.stderr(),
                  "no log line for the expired session")
        # kwire itself as the client: C authenticates to px as svc and
        # re-authenticates its upstream connections before they expire
        up = ("upstream_sasl_mechanism: SCRAM-SHA-512\nupstream_sasl_username: svc\n"
              "upstream_sasl_password: \"Svc-pw-2\"\n")
        cc = su.Proxy(kwire, tmp, "kip368-up", ["--upstream", px.bootstrap, "--sasl",
                                                "terminate", "--sasl-credentials", creds],
                      config=up)
        try:
            exp0 = px.metric("kwire_sasl_sessions_expired_total")
            re0 = px.metric("kwire_sasl_reauthentications_total")
            p = Producer(su.sasl_conf(cc.bootstrap, "PLAIN", "alice", "Alice-pw-1"))
            res, n = [], 0
            end = time.monotonic() + 3.5
            while time.monotonic() < end:
                p.produce(TOPIC, f"u-{n}".encode(), partition=1,
                          on_delivery=lambda err, msg: res.append(err))
                n += 1
                p.poll(0.05)
            p.flush(30)
            check(len(res) == n and not any(res),
                  f"kwire upstream KIP-368: {len(res)} of {n} delivered, "
                  f"errors {[str(e) for e in res if e]}")
            up_re = cc.metric("kwire_sasl_upstream_reauthentications_total")
            print(f"kwire as a KIP-368 client: {n} records, {up_re:.0f} upstream "
                  f"re-authentications")
            check(up_re >= 1, "kwire never re-authenticated upstream")
            check(px.metric("kwire_sasl_reauthentications_total") >= re0 + 1,
                  "the broker side saw no re-authentication")
            check(px.metric("kwire_sasl_sessions_expired_total") == exp0,
                  "a session of kwire's upstream connections expired")
        finally:
            check(cc.stop() == 0, "the upstream kwire did not exit cleanly:\n" + cc.stderr())
    finally:
        check(px.stop() == 0, "the KIP-368 kwire did not exit cleanly:\n" + px.stderr())


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-oauth-")
    kwire = os.environ["KWIRE_BIN"]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_path = os.path.join(tmp, "jwks.json")
    with open(jwks_path, "w") as f:
        json.dump(jwks(rsa_key, ec_key), f)
    creds = os.path.join(tmp, "users")
    su.passwd(kwire, creds, "alice", "Alice-pw-1")
    su.passwd(kwire, creds, "svc", "Svc-pw-2")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(RULES)
    args = ["--sasl", "terminate", "--sasl-jwks", jwks_path, "--sasl-credentials", creds,
            "--rules", rules]
    with Cluster(topics=((TOPIC, 2),), extra_proxy_args=args) as c:
        # 1. good tokens
        for alg, key, kid in (("RS256", rsa_key, "rsa-1"), ("ES256", ec_key, "ec-1")):
            su.confluent_round(oauth_conf(c.bootstrap, token(key, alg, kid)), TOPIC, 5,
                               f"oauth-{alg}")
        entries = c.log_entries()
        check(any(e.get("principal") == "User:alice" and e.get("api") == "Produce"
                  for e in entries), "the access log names no Produce of User:alice")
        check(c.metric("kwire_sasl_authentications_total", mechanism="OAUTHBEARER",
                       result="success") >= 2, "OAUTHBEARER successes not counted")
        # 2. refused tokens
        now = int(time.time())
        expired = token(rsa_key, "RS256", "rsa-1", iat=now - 600, exp=now - 120)
        log = refused(c, expired, "expired token", [expired, expired.split(".")[2]])
        check("JWT expired" in log, "kwire's log does not say the token expired")
        forged = token(other, "RS256", "rsa-1")
        log = refused(c, forged, "token signed by another key", [forged.split(".")[2]])
        check("bad JWT signature" in log, "kwire's log does not say the signature is bad")
        nosub = token(rsa_key, "RS256", "rsa-1", sub=None)
        log = refused(c, nosub, "token without sub", [nosub.split(".")[2]])
        check('without a usable "sub"' in log, "kwire's log does not say the sub is missing")
        check(c.metric("kwire_sasl_authentications_total", mechanism="OAUTHBEARER",
                       result="failure") >= 3, "OAUTHBEARER failures not counted")
        # 3. a principal-based deny rule
        eve_denied(c, rsa_key)
        # 4. KIP-368
        kip368(c, kwire, tmp, creds)
    print(f"ok (peer {peer()})")


if __name__ == "__main__":
    main()
