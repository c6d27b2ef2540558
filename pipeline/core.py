"""Stage declarations → doit task dicts and the action that restores or runs a stage. The stage
table itself lives in pipeline/dag.py."""
import logging
import os
import subprocess
import sys
from pathlib import Path

from doit.exceptions import TaskFailed
from doit.task import clean_targets

from . import cache as cache_mod, executor, keys, remote, resources
from .config import REPO, Profile
from .hashing import file_digest
from .procs import die_with_parent
from .stage import Stage

log = logging.getLogger("sao.cache")


class KeyUnchanged:
    """doit `uptodate` item: up to date while the stage key (config slice, tool versions, the
    digests of the code its last run imported …) equals the one its last successful run returned."""

    def __init__(self, stage: Stage, out: Path):
        self.digest = keys.local_key(stage, keys.read_depfile(keys.depfile(out, stage.name)))

    def __call__(self, task, values):
        return values.get("stage_key") == self.digest


def run_stage(stage: Stage, profile: Profile):
    """doit action: restore the stage from the cache, or run it — on a Dask worker
    (pipeline/executor.py) or here (`build_here`) — and upload the result. Returns the stage key
    doit saves."""
    cache = cache_mod.for_profile(profile)
    depfile = keys.depfile(profile.out, stage.name)
    reg = remote.registry(profile.out)
    inputs = {role: remote.digest_of(p, reg) for role, p in stage.inputs.items()} if cache.readable else {}
    with cache.timing(stage.name):  # each step below that does the work records its own span
        restored = cache.readable and cache.restore(stage, keys.read_depfile(depfile), inputs)
    if restored:
        return {"stage_key": keys.local_key(stage, keys.read_depfile(depfile))}
    if (cluster := executor.for_profile(profile)) is not None:
        with cache.timing(stage.name):
            outcome = cluster.run(stage, keys.read_depfile(depfile), inputs, cache)
        if outcome is True:
            return {"stage_key": keys.local_key(stage, keys.read_depfile(depfile))}
        if outcome is not None:
            return outcome
    try:
        remote.materialize(profile, stage.inputs.values(), cache)
    except RuntimeError as e:
        return TaskFailed(str(e))
    if rc := build_here(stage, profile, cache):
        log_file = profile.out / "logs" / f"{stage.name}.log"
        return TaskFailed(f"stage '{stage.name}' failed (exit {rc}); log: {log_file}")
    return {"stage_key": keys.local_key(stage, keys.read_depfile(depfile))}


def build_here(stage: Stage, profile: Profile, cache) -> int:
    """Run the stage in its own process here (heavy imports, memory, global side effects stay
    there) once a core and the memory it needs are free, its inputs on disk; upload the result.
    The child writes the per-task log; its console lines are progress only. Its exit status."""
    cmd = [sys.executable, "-m", "pipeline.runner", str(profile.path), stage.name]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    admit = resources.admission().admit(stage.name, resources.need(stage.name, profile),
                                        resources.priority(stage.name, profile))
    inputs = {role: file_digest(p) for role, p in stage.inputs.items()}
    with admit, cache.timing(stage.name):
        rc = subprocess.call(cmd, cwd=REPO, env=env, preexec_fn=die_with_parent)
    if rc != 0:
        cache.ran(stage.name, "failed")
        return rc
    cache.ran(stage.name)
    remote.registry(profile.out).drop(stage.outputs.values())
    if changed := [role for role, p in stage.inputs.items() if file_digest(p) != inputs[role]]:
        log.warning("warning: %s changed its own input (%s): not uploaded to the cache", stage.name,
                    ", ".join(changed))
    elif cache.writable:
        cache.upload_soon(stage, keys.read_depfile(keys.depfile(profile.out, stage.name)), inputs)
    return 0


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
