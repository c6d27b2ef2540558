"""Child-process entry point of every stage: `python -m pipeline.runner PROFILE STAGE`.

Gives the stage temporary output paths, and only after it returns renames them into place; a
failed or killed stage therefore leaves no file that looks finished. After a stage succeeded it
writes the stage's depfile: every project file the process imported or opened (pipeline/keys.py)."""
import importlib
import logging
import os
import resource
import sys
import time
import traceback

from . import atomic, dag, keys, log as logsetup
from .config import load_profile
from .errors import InputError


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


def run(profile_path: str, name: str) -> int:
    profile = load_profile(profile_path)
    opened = _record_opens()  # from here on: the profile is config, keyed by its slices
    stage = {s.name: s for s in dag.stages(profile)}[name]
    log = logsetup.setup(profile.out / "logs" / f"{name}.log", name)
    tmps = {}
    try:
        for role, out in stage.outputs.items():
            out.parent.mkdir(parents=True, exist_ok=True)
            for stale in out.parent.glob(f"{atomic.TMP_PREFIX}*.{out.name}"):
                stale.unlink()
            tmps[role] = atomic.tmp_path(out)
        t0 = time.perf_counter()
        module = importlib.import_module(f"stages.{stage.module}")
        module.run(dict(stage.inputs), dict(tmps), stage.config)
        missing = [str(stage.outputs[r]) for r, t in tmps.items() if not t.is_file()]
        if missing:
            raise RuntimeError(f"stage wrote no {', '.join(missing)}")
        for role, tmp in tmps.items():
            atomic.commit(tmp, stage.outputs[role])
        opened -= {str(p) for p in stage.inputs.values()}  # inputs are keyed by content, by role
        keys.write_depfile(keys.depfile(profile.out, name), keys.imported_files(opened))
        log.info("done in %.1f s, peak RSS %.0f MB", time.perf_counter() - t0, _peak_rss_mb())
        return 0
    except InputError as e:
        e.file = e.file or profile_path  # a stage's config slice comes from the profile
        logging.getLogger("sao").error("error: %s", e)
        return InputError.exit_code
    except Exception as e:
        traceback.print_exc()
        logging.getLogger("sao").error("error: %s: %s", type(e).__name__, e)
        return 1
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(run(*sys.argv[1:]))
