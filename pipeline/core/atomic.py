"""Write-then-rename helpers: a killed or failed step never leaves a file that looks finished
(the temporary names and `atomic_path` are the runtime's: runtime/files.py)."""
import os
from pathlib import Path

from runtime.files import TMP_PREFIX, atomic_path, strict_json, tmp_path  # noqa: F401 - this module's API
from .hashing import file_digest


def commit(tmp: Path, path: Path) -> bool:
    """Move a finished temporary file onto `path`. When the bytes are unchanged the old file (and
    its mtime) is kept, so the checker downstream needs no re-hash. Returns True if replaced."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    if path.exists() and path.stat().st_size == tmp.stat().st_size and file_digest(path) == file_digest(tmp):
        tmp.unlink()
        return False
    os.chmod(tmp, 0o644)  # some writers create 0600 files
    os.replace(tmp, path)
    return True


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_json(path, obj):
    """Strict JSON (no Infinity/NaN: runtime/files.py), sorted keys, written then renamed."""
    write_bytes(path, strict_json(obj).encode())
