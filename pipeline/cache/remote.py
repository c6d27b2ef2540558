"""Outputs kept in the shared cache instead of on this disk: "build without the bytes", as
Bazel's `--remote_download_outputs=toplevel`.

With `[cache] download = "toplevel"` (the default) a stage restored from the cache downloads only
the files no stage reads (the bundle, the reports, its log). Each output another stage reads is
recorded here instead, once the store has shown its blob: path → XXH3-128 digest and size, in
`artifacts/<profile>/.remote.json`. doit's checker (pipeline/orchestration/checker.py) sees a recorded
path as an existing file with that digest, so a build whose stages all restore moves only the
final bytes. A stage that has to run reads its recorded inputs in first, or has their producer
run again (`materialize`, pipeline/orchestration/tasks.py). A file on disk always wins over a record."""
import json
import os
import threading
from pathlib import Path

from pipeline.core import atomic
from pipeline.core.hashing import file_digest, remember
from runtime.vocab import MANIFEST

class Registry:
    """The recorded files of one profile (paths relative to its artifacts folder)."""

    def __init__(self, out: Path):
        self.out, self.path = Path(out), Path(out) / ".remote.json"
        # Files a fetch brought to disk, verified then: their digest and the stat they had, so
        # doit's checker (whose state still holds the record) need not read them again.
        self.fetched_path = self.out / ".fetched.json"
        self._lock = threading.Lock()
        self._files, self._fetched = (_load(p) for p in (self.path, self.fetched_path))

    def _rel(self, path) -> str:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(self.out))

    def get(self, path) -> dict | None:
        """{"digest", "size"} of a file kept in the cache; None when it is on disk or unknown."""
        rec = self._files.get(self._rel(path))
        return rec if rec is not None and not os.path.lexists(path) else None

    def paths(self) -> list[Path]:
        return [self.out / rel for rel in sorted(self._files) if self.get(self.out / rel)]

    def add(self, path, digest: str, size: int):
        self._update({self._rel(path): {"digest": digest, "size": size}}, ())

    def drop(self, paths):
        self._update({}, [self._rel(p) for p in paths])

    def fetched(self, path, digest: str):
        """The file is on disk now, with these verified bytes. One that was kept in the cache (doit's
        state holds its record, not a time) is remembered by its stat."""
        rel = self._rel(path)
        if rel not in self._files:
            return self._update({}, [rel])
        st = os.stat(path)
        self._update({}, [rel], {rel: {"digest": digest, "stat": [st.st_ino, st.st_mtime_ns, st.st_size]}})

    def verified(self, path, st) -> str | None:
        """The digest a fetch verified for this file, while it has the stat it had then."""
        rec = self._fetched.get(self._rel(path))
        seen = [getattr(st, "st_ino", None), getattr(st, "st_mtime_ns", None), st.st_size]
        return rec["digest"] if rec is not None and rec["stat"] == seen else None

    def _update(self, add: dict, drop, fetched: dict | None = None):
        with self._lock:
            files = {k: v for k, v in {**self._files, **add}.items() if k not in drop}
            known = {k: v for k, v in self._fetched.items() if k not in drop} | (fetched or {})
            for path, old, new in ((self.path, self._files, files), (self.fetched_path, self._fetched, known)):
                if new != old:
                    atomic.write_json(path, new)
            self._files, self._fetched = files, known


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def digest_of(path, reg: Registry | None) -> str:
    """A file's XXH3-128: its record's when it is kept in the cache, the one a fetch verified
    while its stat is unchanged, else its bytes'."""
    if reg is None:
        return file_digest(path)
    if rec := reg.get(path):
        return rec["digest"]
    return reg.verified(path, os.stat(path)) or file_digest(path)


def consumed(table) -> set[Path]:
    """The files some stage reads: the outputs a toplevel restore leaves in the cache. Not the
    reports (reports/*.json: small, and what people and the report page read), nor the bundle (the
    folder the manifest is in: what the app loads, though stage attest reads its manifest)."""
    bundle = {p.parent for s in table for role, p in s.outputs.items() if role == MANIFEST}
    return {p for s in table for p in s.inputs.values() if p.parent.name != "reports" and not bundle & set(p.parents)}


def commit_fetched(tmp: Path, path: Path, digest: str, reg: Registry):
    """A downloaded, verified blob into place; a file that was kept in the cache no longer is,
    and is known by its digest while its stat stays the same."""
    atomic.commit(tmp, path)
    remember(path, digest)
    reg.fetched(path, digest)
