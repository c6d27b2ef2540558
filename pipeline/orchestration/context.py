"""One build: what a doit process holds for its profile, made once (dodo.py) and passed to every
task action: the stage table, the records of files kept in the cache, the cache client (made at
the first stage action), the Dask cluster or None, the stages' priorities for the admission, the
code each stage's last run used (its depfile, read once) and a lock per stage that makes a file
again."""
import threading

from pipeline.cache.client import Cache
from pipeline.cache.remote import Registry
from pipeline.cluster.executor import Remote
from pipeline.core import keys, resources
from pipeline.core.config import Profile
from pipeline.core.dag import stages
from pipeline.core.stage import Stage


class Build:
    def __init__(self, profile: Profile, cluster: Remote | None):
        self.profile, self.cluster = profile, cluster
        self.table = stages(profile)
        self.registry = Registry(profile.out)
        self.priorities = resources.remaining_seconds(self.table)
        self._cache: Cache | None = None
        self._lock = threading.Lock()
        self._remaking: dict[str, threading.Lock] = {}
        self._code: dict[str, tuple] = {}

    @property
    def cache(self) -> Cache:
        """The build's cache client, made at the first stage action (it starts the build's
        record, logs/last_build.json: a no-op `doit` keeps the last one)."""
        with self._lock:
            if self._cache is None:
                self._cache = Cache(self.profile, self.table, self.registry)
            return self._cache

    @property
    def cache_if_made(self) -> Cache | None:
        return self._cache

    def producer(self, path) -> Stage:
        return next(s for s in self.table if path in s.outputs.values())

    def remaking(self, stage: Stage) -> threading.Lock:
        """Held while `stage` makes a file again (pipeline/orchestration/tasks.py materialize)."""
        with self._lock:
            return self._remaking.setdefault(stage.name, threading.Lock())

    def code(self, stage: Stage) -> list[str]:
        """The project files the stage's last run used (its depfile), read once, and again only
        when a run or a restore has replaced the file."""
        path = keys.depfile(self.profile.out, stage.name)
        try:
            st = path.stat()
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            seen = None
        with self._lock:
            if (got := self._code.get(stage.name)) is None or got[0] != seen:
                got = self._code[stage.name] = (seen, keys.read_depfile(path))
            return got[1]
