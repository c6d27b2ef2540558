"""Files the app reads and writes: XXH3-128 digests (the manifest's `xxh3_128`), streamed, and
write-then-rename, so a killed run never leaves a file that looks finished."""
import json
import math
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


def strict_json(obj) -> str:
    """JSON that a strict RFC 8259 parser (JavaScript's JSON.parse, Go, Swift) accepts: a value
    that is not a finite number (an SNR of identical outputs is +inf) is written as null, and a
    top-level object gains `non_finite`: {JSON pointer: "+inf" | "-inf" | "nan"} saying what each
    null stood for."""
    found = {}

    def clean(x, at):
        if isinstance(x, float) and not math.isfinite(x):
            found[at] = "nan" if math.isnan(x) else ("+inf" if x > 0 else "-inf")
            return None
        if isinstance(x, dict):  # JSON pointers (RFC 6901): "~" and "/" in a key escaped
            return {k: clean(v, f"{at}/{k.replace('~', '~0').replace('/', '~1')}") for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v, f"{at}/{i}") for i, v in enumerate(x)]
        return x
    obj = clean(obj, "")
    if found and isinstance(obj, dict):
        obj["non_finite"] = found
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def read_json(path) -> dict:
    """A JSON file strict_json wrote, with each `non_finite` value put back (null → +inf, …)."""
    obj = json.loads(Path(path).read_text())
    for pointer, value in (obj.pop("non_finite", None) or {}).items():
        *parents, last = (k.replace("~1", "/").replace("~0", "~") for k in pointer.split("/")[1:])
        node = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = float(value)
    return obj
