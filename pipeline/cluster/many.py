"""`sao-litert build-many PROFILE…`: several profiles in one command, one doit process each.

With a Dask scheduler (every profile's [executor], or $SAO_LITERT_SCHEDULER) they build at once,
all submitting to the cluster: a stage whose key two profiles share runs once
(pipeline/cluster/executor.py). Without one they build one after another, so that each doit's memory
admission sees the whole machine; with a shared cache the later ones restore what the earlier
ones built. Each line of output is prefixed with its profile's name."""
import logging
import subprocess
import sys
import threading
from pathlib import Path

from pipeline.core.config import REPO, load_profile
from pipeline.core.errors import InputError
from pipeline.core.procs import child_env
from . import executor

log = logging.getLogger("sao.many")


def main(paths: list[Path], jobs: int | None = None) -> int:
    try:
        profiles = [load_profile(p) for p in paths]
        remote = [executor.settings(p).kind == "dask" for p in profiles]
    except InputError as e:
        log.error("error: %s", e)
        return InputError.exit_code
    names = [p.name for p in profiles]
    if len(set(names)) < len(names):
        log.error("error: build-many: two profiles have the same name (%s); each needs its own artifacts/",
                  ", ".join(sorted({n for n in names if names.count(n) > 1})))
        return InputError.exit_code

    def start(p):
        cmd = [sys.executable, "-m", "doit", f"profile={p.path}", *(["-n", str(jobs)] if jobs else [])]
        return subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if all(remote):
        log.info("building %d profiles at once on the Dask cluster", len(profiles))
        procs = [start(p) for p in profiles]
        pumps = [threading.Thread(target=_pump, args=(p.stdout, n)) for p, n in zip(procs, names)]
        for t in pumps:
            t.start()
        for t in pumps:
            t.join()
        codes = [p.wait() for p in procs]
    else:
        log.info("building %d profiles one after another (no Dask executor)", len(profiles))
        codes = []
        for p in profiles:
            proc = start(p)
            _pump(proc.stdout, p.name)
            codes.append(proc.wait())
    for n, rc in zip(names, codes):
        log.info("%s: %s", n, "built" if rc == 0 else f"FAILED (exit {rc})")
    return 0 if not any(codes) else 1


def _pump(stream, name: str):
    for line in stream:
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()
