"""The shared cache's storage, on any fsspec URL (file://, s3://, gs://, …), laid out like Bazel's
remote cache: content-addressed blobs `cas/<xxh3-128>`, written create-only, and small JSON
entries `ac/<key>.json` / `deps/<key>.json`. Callers write an action entry only after all its
blobs, so a reader never finds an entry whose blobs are missing. On a local store every write is
a temporary name + rename; an S3 object appears whole when its upload completes.

Credentials come from the store's own mechanisms (AWS environment/profiles, …); this module
never writes a URL's user part or the storage options anywhere (`redact`)."""
import json
import os
import re
import shutil
import uuid
from datetime import datetime

import xxhash


# Blobs move in ranged reads and multipart writes of this size: s3fs's get_file/put_file hold a
# whole object in memory (1.4 GB for the real-size DiT), these hold one chunk.
_CHUNK = 32 << 20
# S3: fail fast on a dead endpoint instead of botocore's long default retries.
_S3_DEFAULTS = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 120,
                                  "retries": {"max_attempts": 2, "mode": "standard"}}}


def redact(url: str) -> str:
    """The URL without a user/password part (s3://KEY:SECRET@bucket → s3://***@bucket)."""
    return re.sub(r"^([a-z0-9+.-]+://)[^/@]*@", r"\1***@", str(url))


class Store:
    def __init__(self, url: str, options: dict | None = None):
        import fsspec  # here, not at module level: a no-op doit never pays for it
        from fsspec.implementations.local import LocalFileSystem
        protocol = fsspec.core.split_protocol(url)[0] or "file"
        opts = {**(_S3_DEFAULTS if protocol in ("s3", "s3a") else {}), **(options or {})}
        self.fs, self.root = fsspec.core.url_to_fs(url, **opts)
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        if self.local:
            self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, kind: str, name: str) -> str:
        return f"{self.root}/{kind}/{name}"

    def blob_size(self, digest: str) -> int | None:
        """Size of the stored blob, None when there is none."""
        try:
            return self.fs.size(self._path("cas", digest))
        except FileNotFoundError:
            return None

    def put_blob(self, src, digest: str, replace: bool = False) -> int:
        """Upload a file under its digest; an existing blob is kept unless `replace`. Bytes sent."""
        size = os.path.getsize(src)
        if not replace and self.blob_size(digest) == size:
            return 0
        def write(path):
            with open(src, "rb") as f, self.fs.open(path, "wb", block_size=_CHUNK) as out:
                shutil.copyfileobj(f, out, _CHUNK)
        self._write(self._path("cas", digest), write)
        return size

    def _chunks(self, digest: str):
        """(offset, bytes) of a blob, in ranged reads (FileNotFoundError when there is none)."""
        path = self._path("cas", digest)
        size = self.fs.size(path)
        for start in range(0, size, _CHUNK):
            yield start, self.fs.cat_file(path, start=start, end=min(start + _CHUNK, size))

    def get_blob(self, digest: str, dst, progress=None) -> str:
        """Download a blob to dst; returns the XXH3-128 of the bytes written (FileNotFoundError
        when the store has no such blob). `progress(n)` is called with each chunk's size."""
        h = xxhash.xxh3_128()
        with open(dst, "wb") as out:
            for start, chunk in self._chunks(digest):
                h.update(chunk)
                out.write(chunk)
                if progress:
                    progress(len(chunk))
                out.flush()
                # Start writing this chunk to disk now, while the next one downloads: the fsync
                # before the rename into place then has little left to wait for.
                os.posix_fadvise(out.fileno(), start, len(chunk), os.POSIX_FADV_DONTNEED)
        return h.hexdigest()

    def hash_blob(self, digest: str) -> str:
        """XXH3-128 of a stored blob's bytes, streamed (FileNotFoundError when there is none)."""
        h = xxhash.xxh3_128()
        for _, chunk in self._chunks(digest):
            h.update(chunk)
        return h.hexdigest()

    def listing(self, kind: str) -> dict[str, tuple[int, float]]:
        """name → (size, last-modified Unix time, the store's clock) of everything under kind/,
        ".json" dropped from entry names; one listing call."""
        try:
            found = self.fs.find(f"{self.root}/{kind}", detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for path, info in found.items():
            name = path.rsplit("/", 1)[-1]
            if info.get("type") != "file" or ".tmp-" in name:  # s3fs lists an emptied folder itself
                continue
            when = info.get("LastModified", info.get("mtime", 0))
            out[name.removesuffix(".json")] = (info["size"], when.timestamp() if isinstance(when, datetime) else when)
        return out

    def delete(self, kind: str, name: str):
        """Remove one object (entries: name without ".json"); a missing one is no error."""
        path = self._path(kind, name if kind == "cas" else f"{name}.json")
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def get_json(self, kind: str, key: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self._path(kind, f"{key}.json")))
        except FileNotFoundError:
            return None

    def put_json(self, kind: str, key: str, obj: dict):
        data = json.dumps(obj, indent=1, sort_keys=True).encode()
        self._write(self._path(kind, f"{key}.json"), lambda p: self.fs.pipe_file(p, data))

    def _write(self, path: str, write):
        """write(p) puts the bytes at p; on a local store p is a temporary name renamed onto path."""
        if not self.local:
            return write(path)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            write(tmp)
            self.fs.mv(tmp, path)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm_file(tmp)
