"""Child-process entry point of every stage: `python -m pipeline.core.runner --job JOB.json`, the
stage's description (pipeline/core/stage.py `Stage.job`): written by the build for a stage run
here (artifacts/<profile>/.jobs/<stage>.json: run it again alone with this command), by a Dask
worker with the paths moved into its scratch folder, by `cache verify --rebuild`.

Gives the stage temporary output paths, and only after it returns renames them into place; a
failed or killed stage therefore leaves no file that looks finished. After a stage succeeded it
writes the stage's depfile: the project files the stage's code imported or opened, not the
runner's (pipeline/core/keys.py). It always writes the stage's record (pipeline/core/log.py)."""
import importlib
import json
import logging
import os
import resource
import sys
import time
import traceback
from pathlib import Path

from . import atomic, keys, log as logsetup, memo
from .errors import InputError
from .stage import Stage


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def _record_opens() -> set[str]:
    """Paths this process opens from now on (Python-level opens; imports are read from sys.modules)."""
    seen = set()

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, os.PathLike)):
            seen.add(os.fspath(args[0]))
    sys.addaudithook(hook)
    return seen


def _memo_salt(stage: Stage) -> dict:
    """What a stage's memo entries are made by (pipeline/core/memo.py): its key's parts but the
    config slice and outputs, the code being what its module reaches and has loaded so far."""
    code = keys.stage_code(f"stages.{stage.module}", set(sys.modules))
    return {k: v for k, v in keys.key_parts(stage, code).items() if k not in ("config", "outputs")}


def run_job(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    opened = _record_opens()
    stage = Stage.from_job(job)
    memo.setup(job["memo"] and Path(job["memo"]), lambda: _memo_salt(stage))
    return execute(stage, Path(job["log"]), Path(job["depfile"]), opened, job["profile"], job["where"])


def execute(stage: Stage, log_file: Path, depfile: Path, opened: set[str], profile_file, where: str) -> int:
    name = stage.name
    log = logsetup.setup(log_file, name)
    tmps, rc, error, t0 = {}, 1, None, time.perf_counter()
    try:
        for role, out in stage.outputs.items():
            out.parent.mkdir(parents=True, exist_ok=True)
            for stale in out.parent.glob(f"{atomic.TMP_PREFIX}*.{out.name}"):
                stale.unlink()
            tmps[role] = atomic.tmp_path(out)
        module = importlib.import_module(f"stages.{stage.module}")
        module.run(stage.given, dict(tmps), stage.config)
        missing = [str(stage.outputs[r]) for r, t in tmps.items() if not t.is_file()]
        if missing:
            raise RuntimeError(f"stage wrote no {', '.join(missing)}")
        for role, tmp in tmps.items():
            atomic.commit(tmp, stage.outputs[role])
        opened -= {str(p) for p in stage.inputs.values()}  # inputs are keyed by content, by role
        keys.write_depfile(depfile, keys.stage_code(module.__name__, set(sys.modules), opened))
        log.info("done in %.1f s, peak RSS %.0f MB", time.perf_counter() - t0, _peak_rss_mb())
        rc = 0
    except InputError as e:
        e.file = e.file or profile_file  # a stage's config slice comes from the profile
        error = f"error: {e}"
        rc = InputError.exit_code
    except Exception as e:
        traceback.print_exc()
        error = f"error: {type(e).__name__}: {e}"
    finally:
        if error:
            logging.getLogger("sao").error("%s", error)
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        atomic.write_json(logsetup.record_of(log_file), {
            "stage": name, "outcome": "ran" if rc == 0 else "failed", "exit": rc, "error": error, "where": where,
            "seconds": round(time.perf_counter() - t0, 3), "peak_rss_mb": round(_peak_rss_mb(), 1),
            "measured": logsetup.measured()})
    return rc


if __name__ == "__main__":
    if sys.argv[1:2] != ["--job"] or len(sys.argv) != 3:
        sys.exit("usage: python -m pipeline.core.runner --job JOB.json")
    sys.exit(run_job(sys.argv[2]))
