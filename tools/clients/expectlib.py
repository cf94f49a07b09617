"""Writes expected-record lines (format: docs/test-data.md).

One record per line, TAB-separated:
  kind topic partition offset codec flags key value headers
kind: produce | fetch
codec: none|gzip|snappy|lz4|zstd, or * when the client cannot know (fetch)
flags: - or a comma list of idempotent, txn, aborted
key, value: lowercase hex, "-" for null (an empty value is an empty field);
            over 64 KiB: "sha256:" and the hex SHA-256 of the bytes
headers: - for none, else name=hex;name=hex (a null header value is name=-)
"""

import hashlib
import re

_NAME_OK = re.compile(r"^[A-Za-z0-9._-]+$")


# Keys and values longer than this are written as their SHA-256: as strict
# a check, without megabytes of hex in the repository.
DIGEST_OVER = 64 * 1024


def _hex(b):
    if b is None:
        return "-"
    if isinstance(b, str):
        b = b.encode("utf-8")
    b = bytes(b)
    if len(b) > DIGEST_OVER:
        return "sha256:" + hashlib.sha256(b).hexdigest()
    return b.hex()


def _headers(hdrs):
    if not hdrs:
        return "-"
    out = []
    for k, v in hdrs:
        if isinstance(k, bytes):
            k = k.decode("utf-8")
        if not _NAME_OK.match(k):
            raise ValueError("header name %r not allowed in expected files" % k)
        out.append("%s=%s" % (k, _hex(v)))
    return ";".join(out)


def line(kind, topic, partition, offset, codec, flags, key, value, headers):
    """One expected line, newline included. flags: iterable of str."""
    assert kind in ("produce", "fetch")
    assert codec in ("none", "gzip", "snappy", "lz4", "zstd", "*")
    fl = ",".join(flags) if flags else "-"
    return "\t".join([kind, topic, str(partition), str(offset), codec, fl,
                      _hex(key), _hex(value), _headers(headers)]) + "\n"
