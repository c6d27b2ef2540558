"""doit's file checker, with XXH3-128 and the files a restore left in the shared cache
(pipeline/cache/remote.py): those exist for doit, with their recorded digest and size."""
import os
from types import SimpleNamespace

from doit.dependency import FileChangedChecker

from pipeline.cache import remote
from pipeline.core.hashing import file_digest

REMOTE_MTIME = -1.0  # the timestamp doit's state holds for a file that is only in the cache


def checker_for(registry: remote.Registry) -> type:
    """doit's checker class for a build whose files kept in the cache `registry` records."""
    return type("XXH3Checker", (XXH3Checker,), {"registry": registry})


class XXH3Checker(FileChangedChecker):
    """Like doit's MD5Checker, with XXH3-128: an unchanged mtime means unchanged content; a new
    mtime with the same size is settled by the content hash, so `touch` rebuilds nothing. A file
    kept in the cache (`registry`, pipeline/cache/remote.py) exists, with its recorded digest and
    size."""
    registry: remote.Registry | None = None

    def _record(self, path) -> dict | None:
        return self.registry.get(path) if self.registry is not None else None

    def exists(self, file_path):
        return os.path.exists(file_path) or self._record(file_path) is not None

    def info(self, file_path):
        try:
            return os.stat(file_path)
        except OSError:
            if (rec := self._record(file_path)) is None:
                raise
            return SimpleNamespace(st_mtime=REMOTE_MTIME, st_size=rec["size"])

    def check_modified(self, file_path, file_stat, state):
        timestamp, size, digest = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        return digest != remote.digest_of(file_path, self.registry)  # a fetched file: not read again

    def get_state(self, dep, current_state):
        if rec := self._record(dep):
            state = (REMOTE_MTIME, rec["size"], rec["digest"])
            return None if current_state == state else state
        timestamp = os.path.getmtime(dep)
        if current_state and current_state[0] == timestamp:
            return None
        return timestamp, os.path.getsize(dep), file_digest(dep)
