"""XXH3-128 content hashes of files (the runtime's streamed digest) remembered per process, and
of JSON values (doit's checker built on them: pipeline/orchestration/checker.py)."""
import json
import os

import xxhash

from runtime.files import xxh3_128

_known: dict[tuple, str] = {}  # (path, inode, mtime_ns, size) → digest, for this process


def _signature(path) -> tuple:
    st = os.stat(path)
    return os.path.abspath(path), st.st_ino, st.st_mtime_ns, st.st_size


def remember(path, digest: str):
    """Record a digest already known for a file just written (a verified cache restore), so
    later checks in this process need not read it again."""
    _known[_signature(path)] = digest


def file_digest(path) -> str:
    """XXH3-128 hex digest of a file's bytes, streamed; a file unchanged (same inode, mtime and
    size) since this process last hashed it is not read again."""
    sig = _signature(path)
    if sig not in _known:
        _known[sig] = xxh3_128(path)
    return _known[sig]


def json_digest(obj) -> str:
    """XXH3-128 of the canonical JSON form of obj (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return xxhash.xxh3_128_hexdigest(text.encode())
