"""Stage declarations → doit task dicts, and the action that restores or runs a stage. The stage
table itself lives in pipeline/core/dag.py.

One action computes the stage's key once (pipeline/core/keys.py `StageKey`) and hands it, with
the way to make the stage (on the cluster or here), to the cache client in one call; after the
stage ran, the key of the code it recorded is what doit saves."""
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from doit.exceptions import TaskFailed
from doit.task import clean_targets

from pipeline.cache import remote
from pipeline.cache.client import Made
from pipeline.core import keys, resources
from pipeline.core.atomic import write_json
from pipeline.core.config import REPO
from pipeline.core.errors import StageFailed
from pipeline.core.hashing import file_digest
from pipeline.core.keys import StageKey
from pipeline.core.log import QUIET_ENV, record_of
from pipeline.core.procs import SCHEDULER_ENV, child_env, die_with_parent
from pipeline.core.stage import Stage
from . import status
from .context import Build

log = logging.getLogger("sao.cache")


class KeyUnchanged:
    """doit `uptodate` item: up to date while the stage key (config slice, tool versions, the
    digests of the code its last run imported …) equals the one its last successful run returned."""

    def __init__(self, stage: Stage, build: Build):
        self.digest = StageKey(stage, build.code(stage), {}).local

    def __call__(self, task, values):
        return values.get("stage_key") == self.digest


def stage_key(stage: Stage, build: Build) -> StageKey:
    """The stage's key now: the code its last run recorded, its inputs' digests (a file a restore
    left in the store by its record)."""
    return StageKey(stage, build.code(stage),
                    {role: remote.digest_of(p, build.registry) for role, p in stage.inputs.items()})


def run_stage(stage: Stage, build: Build):
    """doit action: the stage restored from the cache, or run — on a Dask worker
    (pipeline/cluster/executor.py) or here (`run_here`) — and uploaded: one call of the cache
    client (`Cache.restore_or_run`). Returns the stage key doit saves."""
    key = stage_key(stage, build)
    try:
        done = build.cache.restore_or_run(stage, key, lambda log_file: make(stage, build, key, log_file))
        return {"stage_key": done.local}
    except StageFailed as e:
        return TaskFailed(str(e))


def make(stage: Stage, build: Build, key: StageKey, log_file: Path) -> Made:
    """Run the stage on the cluster, or here when there is none (or it declines)."""
    if build.cluster is not None:
        def on_disk(paths) -> StageKey:
            materialize(build, paths)
            return stage_key(stage, build)
        if (made := build.cluster.run(stage, key, build.cache, on_disk)) is not None:
            return made
    if materialize(build, stage.inputs.values()):
        key = stage_key(stage, build)  # a file made again here may differ from its record
    return run_here(stage, build, key, log_file)


def run_here(stage: Stage, build: Build, key: StageKey, log_file: Path) -> Made:
    """Run the stage in its own process here (heavy imports, memory, global side effects stay
    there) once a core and the memory it needs are free, its inputs on disk. The child writes the
    per-task log and record; its console lines are progress only. Returns the key of the code
    the run recorded; StageFailed when the stage failed."""
    profile = build.profile
    job = profile.out / ".jobs" / f"{stage.name}.json"
    write_json(job, stage.job(log_file, keys.depfile(profile.out, stage.name), profile.path, "local",
                             profile.out / "memo" / stage.name))
    cmd = [sys.executable, "-m", "pipeline.core.runner", "--job", str(job)]
    admit = resources.admission().admit(stage.name, resources.need(stage, profile),
                                        build.priorities.get(stage.name, 0.0), core=not resources.quick(stage))
    env = child_env(PYTHONUNBUFFERED="1", **({QUIET_ENV: "quiet"} if status.live() else {}),
                    **({SCHEDULER_ENV: build.cluster.address} if build.cluster else {}))  # for an Arm worker
    with admit:  # the run's span starts once it is admitted
        start = time.time()
        rc = subprocess.call(cmd, cwd=REPO, env=env, preexec_fn=die_with_parent)
        span = (start, time.time())
    if rc != 0:
        try:
            error = json.loads(record_of(log_file).read_text())["error"]
        except (OSError, ValueError, KeyError):
            error = None
        msg = f"stage '{stage.name}' failed (exit {rc}); log: {log_file}"
        if error and status.live():  # the stage's own error line was kept off the console
            msg = f"{error}\n{msg}"
        raise StageFailed(msg, span)
    build.registry.drop(stage.outputs.values())
    changed = [role for role, p in stage.inputs.items() if file_digest(p) != key.inputs[role]]
    if changed:
        log.warning("warning: %s changed its own input (%s): not uploaded to the cache", stage.name,
                    ", ".join(changed))
    return Made(key.with_code(build.code(stage)), upload=not changed, span=span)


def materialize(build: Build, paths) -> int:
    """Put every file among `paths` that a restore left in the store on disk: downloaded and
    verified, or, when the cache cannot give it, made again by its stage here (its own recorded
    inputs first): the cache never fails a build that would pass without it. Locks are taken
    upstream-wards only (a stage's producers lie upstream), so doit's threads cannot deadlock.
    Returns how many of `paths` were recorded."""
    reg, recorded = build.registry, 0
    for path in paths:
        if reg.get(path) is None:
            continue
        recorded += 1
        producer = build.producer(path)
        with build.remaking(producer):
            rec = reg.get(path)
            if rec is None or build.cache.fetch(producer, path, rec):
                continue
            log.info("  %s: running it here again: %s is not available from the cache", producer.name,
                     Path(path).name)
            materialize(build, producer.inputs.values())
            key = stage_key(producer, build)
            try:
                build.cache.restore_or_run(producer, key, lambda log_file: run_here(producer, build, key, log_file),
                                           restore=False)
            except StageFailed as e:
                raise StageFailed(f"{e}, making {path} again") from None
    return recorded


def to_task(stage: Stage, build: Build) -> dict:
    return {
        "basename": stage.name,
        "doc": stage.doc,
        "actions": [(run_stage, [stage, build])],
        "file_dep": [str(p) for p in stage.inputs.values()],
        "targets": [str(p) for p in stage.outputs.values()],
        "uptodate": [KeyUnchanged(stage, build)],
        "clean": [(clean, [build])],
    }


def clean(build: Build, task, dryrun):
    """`doit clean`: the stage's files on disk, and its records of files kept in the cache."""
    clean_targets(task, dryrun)
    if not dryrun:
        build.registry.drop(task.targets)
