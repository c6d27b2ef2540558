"""Stage declarations → doit task dicts and the action that restores or runs a stage. The stage
table itself lives in pipeline/dag.py."""
import os
import subprocess
import sys
from pathlib import Path

from doit.exceptions import TaskFailed

from . import cache as cache_mod, executor, keys, resources
from .config import REPO, Profile
from .hashing import file_digest
from .procs import die_with_parent
from .stage import Stage


class KeyUnchanged:
    """doit `uptodate` item: up to date while the stage key (config slice, tool versions, the
    digests of the code its last run imported …) equals the one its last successful run returned."""

    def __init__(self, stage: Stage, out: Path):
        self.digest = keys.local_key(stage, keys.read_depfile(keys.depfile(out, stage.name)))

    def __call__(self, task, values):
        return values.get("stage_key") == self.digest


def run_stage(stage: Stage, profile: Profile):
    """doit action: restore the stage from the cache, or run it — on a Dask worker
    (pipeline/executor.py) or here in its own process (heavy imports, memory, global side effects
    stay there) once a core and the memory it needs are free — and upload the result. The child
    writes the per-task log; its console lines are progress only. Returns the stage key doit saves."""
    cache = cache_mod.for_profile(profile)
    depfile = keys.depfile(profile.out, stage.name)
    inputs = {role: file_digest(p) for role, p in stage.inputs.items()} if cache.readable else {}
    with cache.timing(stage.name):  # each step below that does the work records its own span
        restored = cache.readable and cache.restore(stage, keys.read_depfile(depfile), inputs)
    if restored:
        return {"stage_key": keys.local_key(stage, keys.read_depfile(depfile))}
    if (remote := executor.for_profile(profile)) is not None:
        with cache.timing(stage.name):
            outcome = remote.run(stage, keys.read_depfile(depfile), inputs, cache)
        if outcome is True:
            return {"stage_key": keys.local_key(stage, keys.read_depfile(depfile))}
        if outcome is not None:
            return outcome
    cmd = [sys.executable, "-m", "pipeline.runner", str(profile.path), stage.name]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    admit = resources.admission().admit(stage.name, resources.need(stage.name, profile),
                                        resources.priority(stage.name, profile))
    with admit, cache.timing(stage.name):
        rc = subprocess.call(cmd, cwd=REPO, env=env, preexec_fn=die_with_parent)
    if rc != 0:
        cache.ran(stage.name, "failed")
        log_file = profile.out / "logs" / f"{stage.name}.log"
        return TaskFailed(f"stage '{stage.name}' failed (exit {rc}); log: {log_file}")
    cache.ran(stage.name)
    code = keys.read_depfile(depfile)
    if cache.writable:
        cache.upload_soon(stage, code, inputs)
    return {"stage_key": keys.local_key(stage, code)}


def to_task(stage: Stage, profile: Profile) -> dict:
    return {
        "basename": stage.name,
        "doc": stage.doc,
        "actions": [(run_stage, [stage, profile])],
        "file_dep": [str(p) for p in stage.inputs.values()],
        "targets": [str(p) for p in stage.outputs.values()],
        "task_dep": list(stage.task_dep),
        "uptodate": [KeyUnchanged(stage, profile.out)],
        "clean": True,
    }
