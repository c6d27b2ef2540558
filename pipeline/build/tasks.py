"""Stage declarations → doit task dicts, and the action that restores or runs a stage. The stage
table itself lives in pipeline/core/dag.py.

One action computes the stage's key once (pipeline/core/keys.py `StageKey`) and hands it to the
cache (restore, upload) and the cluster; after the stage ran here, the key of the code it
recorded is computed once more and saved by doit."""
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

from doit.exceptions import TaskFailed
from doit.task import clean_targets

from pipeline.cache import client as cache_client, remote
from pipeline.cluster import executor
from pipeline.core import keys, resources
from pipeline.core.config import REPO, Profile
from pipeline.core.dag import stages
from pipeline.core.hashing import file_digest
from pipeline.core.keys import StageKey
from pipeline.core.log import QUIET_ENV, record_of
from pipeline.core.procs import child_env, die_with_parent
from pipeline.core.stage import Stage
from . import status

log = logging.getLogger("sao.cache")


class StageFailed(Exception):
    """A stage process failed here: the message names the stage, its exit status and its log."""


class KeyUnchanged:
    """doit `uptodate` item: up to date while the stage key (config slice, tool versions, the
    digests of the code its last run imported …) equals the one its last successful run returned."""

    def __init__(self, stage: Stage, out: Path):
        self.digest = keys.local_key(stage, out)

    def __call__(self, task, values):
        return values.get("stage_key") == self.digest


def stage_key(stage: Stage, profile: Profile) -> StageKey:
    """The stage's key now: the code its last run recorded, its inputs' digests (a file a restore
    left in the store by its record)."""
    reg = remote.registry(profile.out)
    return StageKey(stage, keys.read_depfile(keys.depfile(profile.out, stage.name)),
                    {role: remote.digest_of(p, reg) for role, p in stage.inputs.items()})


def run_stage(stage: Stage, profile: Profile):
    """doit action: restore the stage from the cache, or run it — on a Dask worker
    (pipeline/cluster/executor.py) or here (`build_here`) — and upload the result. Returns the
    stage key doit saves."""
    cache = cache_client.for_profile(profile)
    key = stage_key(stage, profile)
    if cache.readable:
        with cache.timing(stage.name):  # each step below that does the work records its own span
            restored = cache.restore(stage, key)
        if restored is not None:
            return {"stage_key": restored.local}
    try:
        if (cluster := executor.for_profile(profile)) is not None:
            def on_disk(paths) -> StageKey:
                materialize(profile, paths, cache)
                return stage_key(stage, profile)
            with cache.timing(stage.name):
                outcome = cluster.run(stage, key, cache, on_disk)
            if isinstance(outcome, StageKey):
                return {"stage_key": outcome.local}
            if outcome is not None:
                return outcome
        if materialize(profile, stage.inputs.values(), cache):
            key = stage_key(stage, profile)  # a file made again here may differ from its record
        return {"stage_key": build_here(stage, profile, cache, key).local}
    except StageFailed as e:
        return TaskFailed(str(e))


def build_here(stage: Stage, profile: Profile, cache, key: StageKey) -> StageKey:
    """Run the stage in its own process here (heavy imports, memory, global side effects stay
    there) once a core and the memory it needs are free, its inputs on disk; upload the result.
    The child writes the per-task log and record; its console lines are progress only. Returns
    the key of the code the run recorded; StageFailed when the stage failed."""
    cmd = [sys.executable, "-m", "pipeline.core.runner", str(profile.path), stage.name]
    admit = resources.admission().admit(stage.name, resources.need(stage.name, profile),
                                        resources.priority(stage.name, profile))
    env = child_env(PYTHONUNBUFFERED="1", **({QUIET_ENV: "quiet"} if status.live() else {}))
    with admit, cache.timing(stage.name):
        rc = subprocess.call(cmd, cwd=REPO, env=env, preexec_fn=die_with_parent)
    if rc != 0:
        cache.ran(stage.name, "failed")
        try:
            error = json.loads(record_of(cache.log_file(stage)).read_text())["error"]
        except (OSError, ValueError, KeyError):
            error = None
        msg = f"stage '{stage.name}' failed (exit {rc}); log: {cache.log_file(stage)}"
        if error and status.live():  # the stage's own error line was kept off the console
            msg = f"{error}\n{msg}"
        raise StageFailed(msg)
    cache.ran(stage.name)
    remote.registry(profile.out).drop(stage.outputs.values())
    ran = key.with_code(keys.read_depfile(keys.depfile(profile.out, stage.name)))
    if changed := [role for role, p in stage.inputs.items() if file_digest(p) != key.inputs[role]]:
        log.warning("warning: %s changed its own input (%s): not uploaded to the cache", stage.name,
                    ", ".join(changed))
    elif cache.writable:
        cache.upload_soon(stage, ran)
    return ran


_producer_locks: dict[str, threading.Lock] = {}
_producer_locks_lock = threading.Lock()


def materialize(profile: Profile, paths, cache) -> int:
    """Put every file among `paths` that a restore left in the store on disk: downloaded and
    verified, or, when the cache cannot give it, made again by its stage here (its own recorded
    inputs first): the cache never fails a build that would pass without it. Locks are taken
    upstream-wards only (a stage's producers lie upstream), so doit's threads cannot deadlock.
    Returns how many of `paths` were recorded."""
    reg = remote.registry(profile.out)
    table, recorded = None, 0
    for path in paths:
        if reg.get(path) is None:
            continue
        recorded += 1
        table = table or stages(profile)
        producer = next(s for s in table if path in s.outputs.values())
        with _producer_locks_lock:
            lock = _producer_locks.setdefault(producer.name, threading.Lock())
        with lock:
            rec = reg.get(path)
            if rec is None or cache.fetch(producer, path, rec):
                continue
            log.info("  %s: running it here again: %s is not available from the cache", producer.name,
                     Path(path).name)
            materialize(profile, producer.inputs.values(), cache)
            try:
                build_here(producer, profile, cache, stage_key(producer, profile))
            except StageFailed as e:
                raise StageFailed(f"{e}, making {path} again") from None
    return recorded


def to_task(stage: Stage, profile: Profile) -> dict:
    return {
        "basename": stage.name,
        "doc": stage.doc,
        "actions": [(run_stage, [stage, profile])],
        "file_dep": [str(p) for p in stage.inputs.values()],
        "targets": [str(p) for p in stage.outputs.values()],
        "task_dep": list(stage.task_dep),
        "uptodate": [KeyUnchanged(stage, profile.out)],
        "clean": [(clean, [profile])],
    }


def clean(profile: Profile, task, dryrun):
    """`doit clean`: the stage's files on disk, and its records of files kept in the cache."""
    clean_targets(task, dryrun)
    if not dryrun:
        remote.registry(profile.out).drop(task.targets)
