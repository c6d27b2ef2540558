"""Where the aarch64 check's runtime code (`python -m runtime.check`) runs: natively on an Arm
worker of the build's Dask cluster — a worker started with the resource `aarch64` (README "Verified
where it ships") — else here, in the aarch64 userland under qemu user-mode emulation (`./dev
aarch64`: .aarch64/, or $SAO_LITERT_AARCH64). A worker runs the same module on the same files and
inputs; one that cannot be reached, fails or runs other versions of the runtime's packages than
the userland pins leaves the check to the emulation here (one warning): it never fails a check
that would pass without it."""
import json
import logging
import os
import subprocess
import time
from pathlib import Path

from runtime import check
from .procs import SCHEDULER_ENV
from .toolchain import aarch64_userland, aarch64_versions

log = logging.getLogger("sao.aarch64")
RESOURCE = "aarch64"  # the Dask worker resource an Arm worker declares (`--resources aarch64=1`)
CONNECT_TIMEOUT = "10s"


def emulated(args: list[str], cpu: str | None = None, site: tuple[str, ...] = ("site",)) -> tuple[list[str], dict]:
    """The command and environment running `python3.11 ARGS` in the aarch64 userland under
    qemu-aarch64 (on an emulated `cpu`: its features pick XNNPACK's kernels), with this checkout
    and the userland's `site` folders on its path."""
    userland = aarch64_userland()
    root = userland / "root"
    code = Path(check.__file__).resolve().parents[1]  # the folder holding runtime/
    env = {"PYTHONHOME": str(root / "usr"), "PYTHONPATH": ":".join([str(code), *(str(userland / s) for s in site)]),
           "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin",
           check.EMULATED_ENV: json.dumps({"emulator": f"qemu-user {aarch64_versions()['qemu']}", "cpu": cpu or "max"})}
    return [str(root / "usr" / "bin" / "qemu-aarch64"), *(["-cpu", cpu] if cpu else []), "-L", str(root),
            str(root / "usr" / "bin" / "python3.11"), *args], env


def worker(scheduler: str, cpu: str) -> tuple[list[str], dict]:
    """An emulated Arm worker joining `scheduler` (`sao-litert arm-worker`): `dask worker` on an
    emulated `cpu` in the userland with its worker packages (.aarch64/worker/), one thread,
    declaring only `aarch64`."""
    return emulated(["-m", "distributed.cli.dask_worker", scheduler, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                     "--memory-limit", "0", "--resources", f"{RESOURCE}=1"], cpu, site=("site", "worker"))


def run_check(work: Path, cpu: str, wheels: list[str]) -> tuple[dict, dict, str]:
    """`runtime.check` on WORK (request.json, inputs.npz): (its result.json, its outputs, where it
    ran: an Arm worker's address or "emulated here"). `wheels`: the userland's pins ("name==x")."""
    if (scheduler := os.environ.get(SCHEDULER_ENV)) and (done := _on_arm_worker(scheduler, work, wheels)) is not None:
        return done
    cmd, env = emulated(["-m", check.__name__, str(work)], cpu)
    threads = json.loads((work / "request.json").read_text())["threads"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**env, "OMP_NUM_THREADS": str(threads)}, cwd=work, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    log.info("emulated process: %.1f s, exit %d", time.perf_counter() - t0, proc.returncode)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise RuntimeError(f"the emulated aarch64 process exited {proc.returncode}:\n{tail}")
    return (*check.read_back(work), "emulated here")


def _on_arm_worker(scheduler: str, work: Path, wheels: list[str]) -> tuple[dict, dict, str] | None:
    """The check on an Arm worker (the request's files and inputs sent with the task), or None."""
    from distributed import Client
    logging.getLogger("distributed").setLevel(logging.ERROR)
    try:
        with Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            if not any(w.get("resources", {}).get(RESOURCE) for w in workers.values()):
                log.info("no worker of the cluster declares %r: emulated here", RESOURCE)
                return None
            request = json.loads((work / "request.json").read_text())
            files = {name: (Path(request["bundle"]) / name).read_bytes() for name in check.files_of(request)}
            t0 = time.perf_counter()
            future = client.submit(check.run_sent, request, (work / "inputs.npz").read_bytes(), files,
                                   resources={RESOURCE: 1}, pure=False, retries=0)
            result, outputs = future.result()
            (where,) = client.who_has(future)[future.key]
    except Exception as e:  # noqa: BLE001 - the cluster or the worker failed: emulate here
        log.warning("warning: the Arm worker's check failed (%s: %s): emulated here", type(e).__name__,
                    str(e).splitlines()[0] if str(e) else "")
        return None
    if other := sorted(f"{d}=={v}" for d, v in result["versions"].items() if f"{d}=={v}" not in wheels):
        log.warning("warning: the Arm worker runs %s, not the userland's pins: emulated here", ", ".join(other))
        return None
    log.info("on the Arm worker %s: %.1f s", where, time.perf_counter() - t0)
    return result, outputs, where
