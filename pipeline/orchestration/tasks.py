"""Stage declarations → doit task dicts, and the action that restores or runs a stage. The stage
table itself lives in pipeline/core/dag.py.

One action computes the stage's key once (pipeline/core/keys.py `StageKey`) and hands it to the
cache (restore, upload) and the cluster; after the stage ran here, the key of the code it
recorded is computed once more and saved by doit."""
import json
import logging
import subprocess
import sys
from pathlib import Path

from doit.exceptions import TaskFailed
from doit.task import clean_targets

from pipeline.cache import remote
from pipeline.core import keys, resources
from pipeline.core.atomic import write_json
from pipeline.core.config import REPO
from pipeline.core.hashing import file_digest
from pipeline.core.keys import StageKey
from pipeline.core.log import QUIET_ENV, record_of
from pipeline.core.procs import child_env, die_with_parent
from pipeline.core.stage import Stage
from . import status
from .context import Build

log = logging.getLogger("sao.cache")


class StageFailed(Exception):
    """A stage process failed here: the message names the stage, its exit status and its log."""


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
    """doit action: restore the stage from the cache, or run it — on a Dask worker
    (pipeline/cluster/executor.py) or here (`build_here`) — and upload the result. Returns the
    stage key doit saves."""
    cache = build.cache
    key = stage_key(stage, build)
    if (restored := cache.restore(stage, key)) is not None:
        return {"stage_key": restored.local}
    try:  # each step below that does the work records its own span (cache.timing)
        if build.cluster is not None:
            def on_disk(paths) -> StageKey:
                materialize(build, paths)
                return stage_key(stage, build)
            with cache.timing(stage.name):
                outcome = build.cluster.run(stage, key, cache, on_disk)
            if isinstance(outcome, StageKey):
                return {"stage_key": outcome.local}
            if outcome is not None:
                return outcome
        if materialize(build, stage.inputs.values()):
            key = stage_key(stage, build)  # a file made again here may differ from its record
        return {"stage_key": build_here(stage, build, key).local}
    except StageFailed as e:
        return TaskFailed(str(e))


def build_here(stage: Stage, build: Build, key: StageKey) -> StageKey:
    """Run the stage in its own process here (heavy imports, memory, global side effects stay
    there) once a core and the memory it needs are free, its inputs on disk; upload the result.
    The child writes the per-task log and record; its console lines are progress only. Returns
    the key of the code the run recorded; StageFailed when the stage failed."""
    profile, cache = build.profile, build.cache
    job = profile.out / ".jobs" / f"{stage.name}.json"
    write_json(job, stage.job(cache.log_file(stage), keys.depfile(profile.out, stage.name), profile.path, "local"))
    cmd = [sys.executable, "-m", "pipeline.core.runner", "--job", str(job)]
    admit = resources.admission().admit(stage.name, resources.need(stage, profile),
                                        build.priorities.get(stage.name, 0.0))
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
    build.registry.drop(stage.outputs.values())
    ran = key.with_code(build.code(stage))
    if changed := [role for role, p in stage.inputs.items() if file_digest(p) != key.inputs[role]]:
        log.warning("warning: %s changed its own input (%s): not uploaded to the cache", stage.name,
                    ", ".join(changed))
    elif cache.writable:
        cache.upload_soon(stage, ran)
    return ran


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
            try:
                build_here(producer, build, stage_key(producer, build))
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
        "task_dep": list(stage.task_dep),
        "uptodate": [KeyUnchanged(stage, build)],
        "clean": [(clean, [build])],
    }


def clean(build: Build, task, dryrun):
    """`doit clean`: the stage's files on disk, and its records of files kept in the cache."""
    clean_targets(task, dryrun)
    if not dryrun:
        build.registry.drop(task.targets)
