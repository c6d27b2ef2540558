"""Write-then-rename helpers: a killed or failed step never leaves a file that looks finished."""
import json
import os
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp"


def tmp_path(path: Path) -> Path:
    """Sibling temporary name (same directory, so the final rename is atomic). The extension is
    kept last because converters pick formats by it."""
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


def commit(tmp: Path, path: Path) -> bool:
    """Move a finished temporary file onto `path`. When the bytes are unchanged the old file (and
    its mtime) is kept, so the checker downstream needs no re-hash. Returns True if replaced."""
    from .hashing import file_digest
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
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
