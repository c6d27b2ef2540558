"""Outputs kept in the shared cache instead of on this disk: "build without the bytes", as
Bazel's `--remote_download_outputs=toplevel`.

With `[cache] download = "toplevel"` (the default) a stage restored from the cache downloads only
the files no stage reads (the bundle, the reports, its log). Each output another stage reads is
recorded here instead, once the store has shown its blob: path → XXH3-128 digest and size, in
`artifacts/<profile>/.remote.json`. doit's checker (`XXH3Checker`) sees a recorded path as an
existing file with that digest, so a build whose stages all restore moves only the final bytes.

A stage that has to run reads its recorded inputs in first (`materialize`: download, verify,
rename into place). When that fails (the store is gone or off, the blob was evicted or is
corrupt), the stage that made the file runs here again, its own recorded inputs first: the cache
never fails a build that would pass without it. A file on disk always wins over a record.
Stage processes never import this module."""
import json
import logging
import os
import threading
from pathlib import Path
from types import SimpleNamespace

from doit.dependency import FileChangedChecker

from . import atomic
from .dag import stages
from .hashing import file_digest, remember

log = logging.getLogger("sao.cache")
REMOTE_MTIME = -1.0  # the timestamp doit's state holds for a file that is only in the cache


class Registry:
    """The recorded files of one profile (paths relative to its artifacts folder)."""

    def __init__(self, out: Path):
        self.out, self.path = Path(out), Path(out) / ".remote.json"
        self._lock = threading.Lock()
        try:
            self._files = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._files = {}

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

    def _update(self, add: dict, drop):
        with self._lock:
            if all(self._files.get(k) == v for k, v in add.items()) and not set(drop) & set(self._files):
                return
            self._files.update(add)
            for k in drop:
                self._files.pop(k, None)
            atomic.write_json(self.path, self._files)


_registries: dict[Path, Registry] = {}
_registries_lock = threading.Lock()
_active: Registry | None = None  # the doit process's profile, for the checker


def registry(out: Path) -> Registry:
    with _registries_lock:
        key = Path(out).resolve()
        if key not in _registries:
            _registries[key] = Registry(out)
        return _registries[key]


def activate(out: Path):
    """The profile whose records doit's checker consults (one profile per doit process)."""
    global _active
    _active = registry(out)


def _record(path) -> dict | None:
    return _active.get(path) if _active is not None else None


def digest_of(path, reg: Registry | None) -> str:
    """A file's XXH3-128: its record's when it is kept in the cache, else its bytes'."""
    rec = reg.get(path) if reg is not None else None
    return rec["digest"] if rec else file_digest(path)


class XXH3Checker(FileChangedChecker):
    """doit's file checker. Like doit's MD5Checker, with XXH3-128: an unchanged mtime means
    unchanged content; a new mtime with the same size is settled by the content hash, so `touch`
    rebuilds nothing. A file kept in the cache exists, with its recorded digest and size."""

    def exists(self, file_path):
        return os.path.exists(file_path) or _record(file_path) is not None

    def info(self, file_path):
        try:
            return os.stat(file_path)
        except OSError:
            if (rec := _record(file_path)) is None:
                raise
            return SimpleNamespace(st_mtime=REMOTE_MTIME, st_size=rec["size"])

    def check_modified(self, file_path, file_stat, state):
        timestamp, size, digest = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        return digest != digest_of(file_path, _active)

    def get_state(self, dep, current_state):
        if rec := _record(dep):
            state = (REMOTE_MTIME, rec["size"], rec["digest"])
            return None if current_state == state else state
        timestamp = os.path.getmtime(dep)
        if current_state and current_state[0] == timestamp:
            return None
        return timestamp, os.path.getsize(dep), file_digest(dep)


def consumed(table) -> set[Path]:
    """The files some stage reads: the outputs a toplevel restore leaves in the cache."""
    return {p for s in table for p in s.inputs.values()}


_producer_locks: dict[str, threading.Lock] = {}


def materialize(profile, paths, cache):
    """Put every recorded file among `paths` on disk: downloaded and verified, or, when the cache
    cannot give it, made again by its stage here. Locks are taken upstream-wards only (a stage's
    producers lie upstream), so doit's threads cannot deadlock here."""
    from .core import build_here  # core imports this module
    reg = registry(profile.out)
    table = stages(profile)
    for path in paths:
        if reg.get(path) is None:
            continue
        producer = next(s for s in table if path in s.outputs.values())
        with _registries_lock:
            lock = _producer_locks.setdefault(producer.name, threading.Lock())
        with lock:
            rec = reg.get(path)
            if rec is None or cache.fetch(producer, path, rec):
                continue
            log.info("  %s: running it here again: %s is not available from the cache", producer.name,
                     Path(path).name)
            materialize(profile, producer.inputs.values(), cache)
            if rc := build_here(producer, profile, cache):
                raise RuntimeError(f"stage '{producer.name}' failed (exit {rc}) making {path} again; "
                                   f"log: {profile.out / 'logs' / f'{producer.name}.log'}")


def commit_fetched(tmp: Path, path: Path, digest: str, reg: Registry):
    """A downloaded, verified blob into place; the file is no longer only in the cache."""
    atomic.commit(tmp, path)
    remember(path, digest)
    reg.drop([path])
