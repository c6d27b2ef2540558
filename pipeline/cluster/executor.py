"""Where stages run: `[executor] kind = "local"` (this machine, the default) or `"dask"` (a Dask
cluster; `SAO_LITERT_SCHEDULER=tcp://…` selects it for any profile).

With Dask, a stage action submits one task keyed by the stage's action key (identical work
submitted twice, by two profiles or two clients, runs once) that asks the workers for the stage's
memory need as their `MEM` resource. Files move only through the shared cache: the client
uploads the stage's inputs (those a restore left in the store are there already), the worker
(pipeline/cluster/worker.py) publishes outputs and log, the client restores them like any cache hit, so
doit's state and every local command behave as after a local build.

A scheduler that cannot be reached when a build starts is an error. A cluster that fails later
turns remote execution off for the rest of the build with one warning, and the stages run here:
the cluster never fails a build that would pass without it."""
import atexit
import logging
import os
import threading

from pipeline.cache import client as cache_client
from pipeline.cache.client import Made
from pipeline.cache.store import redact
from pipeline.core import keys, resources
from pipeline.core.config import ExecutorSettings, Profile
from pipeline.core.errors import InputError, StageFailed
from pipeline.core.keys import StageKey
from pipeline.core.procs import SCHEDULER_ENV
from . import worker

log = logging.getLogger("sao.executor")
CONNECT_TIMEOUT = "10s"


def settings(profile: Profile) -> ExecutorSettings:
    """The profile's [executor] with $SAO_LITERT_SCHEDULER applied; Dask needs a read-write cache."""
    s = profile.executor
    if address := os.environ.get(SCHEDULER_ENV):
        s = s.model_copy(update={"kind": "dask", "scheduler": address})
    if s.kind == "dask":
        if not s.scheduler:
            raise InputError(profile.path, "executor.scheduler",
                             f"kind 'dask' needs the scheduler's address (tcp://host:8786) or ${SCHEDULER_ENV}")
        c = cache_client.settings(profile)
        if c.mode != "read-write":
            raise InputError(profile.path, "cache.mode" if c.url else "cache.url",
                             "executor 'dask' moves files only through the shared build cache: give "
                             "cache.url (or $SAO_LITERT_CACHE) a store the workers can reach, mode read-write")
    return s


class Remote:
    """One Dask client per doit process; doit's threads submit through it."""

    def __init__(self, profile: Profile, cfg: ExecutorSettings):
        from distributed import Client
        logging.getLogger("distributed").setLevel(logging.ERROR)  # its reconnect chatter
        self.profile, self.address = profile, cfg.scheduler
        self.client = Client(cfg.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        atexit.register(self.client.close)
        self.off = False
        self._lock = threading.Lock()

    def threads(self) -> int:
        return sum(self.client.nthreads().values())

    def _largest_mem(self) -> float:
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return max((w.get("resources", {}).get("MEM", 0) for w in workers), default=0)

    def run(self, stage, key: StageKey, cache, on_disk) -> Made | None:
        """Made: built on a worker and restored here under the key of the code it ran. None: run
        it here instead. StageFailed: the stage itself failed (its `error:` line printed, its log
        fetched). `on_disk(paths)` puts files a restore left in the store on disk (or makes them
        again) and returns the stage's key then (pipeline/orchestration/tasks.py)."""
        from distributed import KilledWorker
        if self.off or not cache.writable:
            return None
        need = resources.need(stage, self.profile)
        try:
            if need > (largest := self._largest_mem()):
                log.warning("warning: executor: no worker offers MEM >= %.1f GB for %s (largest %.1f GB); "
                            "running it here", need / 1e9, stage.name, largest / 1e9)
                return None
            key = self._send_inputs(stage, key, cache, on_disk)
            future = self.client.submit(worker.run_stage, self._spec(stage, key, cache),
                                        key=f"sao-litert-{stage.name}-{key.action}",
                                        resources={"MEM": need}, retries=0)
            log.info("  %s: submitted to %s (MEM %.1f GB)", stage.name, self.address, need / 1e9)
            result = future.result()
        except worker.StageFailed as e:
            raise self._failed(stage, cache, *e.args) from None
        except worker.KeyMismatch as e:
            log.error("error: %s", e)
            raise StageFailed(str(e)) from None
        except KilledWorker as e:
            log.warning("warning: executor: %s killed its workers (%s); running it here", stage.name, e)
            return None
        except Exception as e:  # noqa: BLE001 - the cluster or the store failed: build here
            self._fail(e)
            return None
        ran_on = result["worker"] if result["executed"] else None
        if (restored := cache.restore(stage, key.with_code(result["code"]), ran_on=ran_on)) is not None:
            return Made(restored, where=ran_on)
        differ = [f for f, d in keys.code_digests(result["code"]).items() if d != result["digests"].get(f, d)]
        log.warning("warning: executor: %s: the worker's result could not be restored here%s; running it here",
                    stage.name, f" (code differs: {', '.join(differ)})" if differ else "")
        return None

    def _send_inputs(self, stage, key: StageKey, cache, on_disk) -> StageKey:
        """Every input's blob into the store (create-only: earlier stages' outputs are there). A
        file kept in the cache whose blob has gone is made here first. The key then."""
        store, reg = cache.store(), cache.registry
        in_store = {role for role, p in stage.inputs.items()
                    if (rec := reg.get(p)) and store.blob_size(rec["digest"]) == rec["size"]}
        if gone := [p for role, p in stage.inputs.items() if role not in in_store and reg.get(p)]:
            key = on_disk(gone)
        for role, path in stage.inputs.items():
            if role not in in_store:
                store.put_blob(path, key.inputs[role])
        return key

    def _spec(self, stage, key: StageKey, cache) -> dict:
        """The task's argument: roles, digests and file names, no path of this machine."""
        folders = {}
        return {
            "stage": stage.name, "module": stage.module, "config": stage.config, "tools": list(stage.tools),
            "code": key.code, "key_parts": key.parts,
            "inputs": {role: {"digest": key.inputs[role], "name": p.name,
                              "folder": folders.setdefault(p.parent, len(folders))}
                       for role, p in stage.inputs.items()},
            "outputs": {role: p.name for role, p in stage.outputs.items()},
            "cache": {"url": cache.cfg.url, "options": cache.cfg.options}}

    def _failed(self, stage, cache, line: str, log_digest: str | None) -> StageFailed:
        for role, path in stage.inputs.items():
            line = line.replace("{%s}" % role, str(path))
        line = line.replace("{profile}", str(self.profile.path))
        log_file = cache.log_file(stage)
        if log_digest:
            try:
                log_file.parent.mkdir(parents=True, exist_ok=True)
                cache.store().get_blob(log_digest, log_file)
            except Exception:  # noqa: BLE001 - the error line is what matters
                pass
        log.error("%s", line)
        return StageFailed(f"stage '{stage.name}' failed on a worker; log: {log_file}")

    def _fail(self, e: Exception):
        with self._lock:
            if self.off:
                return
            self.off = True
        msg = redact(str(e)).splitlines()[0] if str(e) else ""
        log.warning("warning: executor: cluster %s failed (%s: %s); running the remaining stages here",
                    self.address, type(e).__name__, msg)


def connect(profile: Profile) -> Remote | None:
    """Called once when a build starts: the Dask client, or None for the local executor. An
    unreachable scheduler raises InputError naming where its address came from."""
    cfg = settings(profile)
    if cfg.kind == "local":
        return None
    try:
        return Remote(profile, cfg)
    except Exception as e:  # noqa: BLE001 - OSError, TimeoutError …: one line either way
        where = (f"${SCHEDULER_ENV}", None) if os.environ.get(SCHEDULER_ENV) else (profile.path, "executor.scheduler")
        raise InputError(*where, f"cannot reach the Dask scheduler {cfg.scheduler} "
                                 f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
