"""Files the app reads and writes: XXH3-128 digests (the manifest's `xxh3_128`), streamed, and
write-then-rename, so a killed run never leaves a file that looks finished."""
import os
from contextlib import contextmanager
from pathlib import Path

import xxhash

_CHUNK = 4 << 20
TMP_PREFIX = ".tmp"


def xxh3_128(path) -> str:
    """XXH3-128 hex digest of a file's bytes, read in 4 MiB chunks."""
    h = xxhash.xxh3_128()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def tmp_path(path) -> Path:
    """Sibling temporary name (same directory, so the final rename is atomic). The extension is
    kept last because writers and converters pick formats by it."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}.{path.name}")


@contextmanager
def atomic_path(path):
    """Yield a temporary path; on success fsync and rename it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
