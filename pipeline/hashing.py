"""XXH3-128 content hashes and the doit file checker built on them."""
import json
import os

import xxhash
from doit.dependency import FileChangedChecker

_CHUNK = 4 << 20


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
        _known[sig] = _stream_digest(path)
    return _known[sig]


def _stream_digest(path) -> str:
    h = xxhash.xxh3_128()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def json_digest(obj) -> str:
    """XXH3-128 of the canonical JSON form of obj (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return xxhash.xxh3_128_hexdigest(text.encode())


class XXH3Checker(FileChangedChecker):
    """Like doit's MD5Checker, with XXH3-128: an unchanged mtime means unchanged content; a new
    mtime with the same size is settled by the content hash, so `touch` rebuilds nothing."""

    def check_modified(self, file_path, file_stat, state):
        timestamp, size, digest = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        return digest != file_digest(file_path)

    def get_state(self, dep, current_state):
        timestamp = os.path.getmtime(dep)
        if current_state and current_state[0] == timestamp:
            return None
        return timestamp, os.path.getsize(dep), file_digest(dep)
