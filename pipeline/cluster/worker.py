"""What a Dask worker runs for one stage (submitted by pipeline/cluster/executor.py): check that this
worker's code and tools give the key the client computed, return at once when the shared cache
already has the result, else pull the inputs from the cache by digest into a scratch folder, run
the stage through pipeline.core.runner in its own process, publish outputs and log to the cache, and
return what the client needs to restore them. Nothing here sees the client's files.

The stage process dies with the worker (pipeline/core/procs.py): a killed worker leaves no stage
running, and the scheduler gives the task to another worker. The cache entry is written last,
so nothing partial is ever published."""
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from pipeline.cache import entries, signing
from pipeline.cache.store import Store
from pipeline.core import keys
from pipeline.core.config import REPO
from pipeline.core.hashing import file_digest
from pipeline.core.keys import StageKey
from pipeline.core.procs import SCHEDULER_ENV, child_env, die_with_parent
from pipeline.core.stage import Stage

EVENT_TOPIC = "sao-litert"  # one event per stage process run here: client.get_events(EVENT_TOPIC)


class StageFailed(Exception):
    """The stage failed for a reason of its own (bad input, parity gate): not retried.
    args: (the stage's `error:` line, digest of its log in the cache or None)."""


class KeyMismatch(Exception):
    """This worker's code or tools differ from the client's: it refuses to build under that key."""


def _differences(want: dict, have: dict, prefix="") -> list[str]:
    out = []
    for k in sorted(set(want) | set(have)):
        a, b = want.get(k), have.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} (client {a}, worker {b})")
    return out


def run_stage(spec: dict) -> dict:
    """The Dask task. `spec` (pipeline/cluster/executor.py) names files by digest and role only."""
    from distributed import get_worker
    worker = get_worker()
    stage = Stage(spec["stage"], "", spec["module"], inputs={},
                  outputs={role: Path(name) for role, name in spec["outputs"].items()},
                  config=spec["config"], tools=tuple(spec["tools"]))
    key = StageKey(stage, spec["code"], {role: i["digest"] for role, i in spec["inputs"].items()})
    differ = _differences(spec["key_parts"], key.parts)
    if differ:
        raise KeyMismatch(f"worker {worker.address} refuses stage '{stage.name}': its "
                          f"{'; '.join(differ)} differ from the client's")
    store = Store(spec["cache"]["url"], spec["cache"]["options"])
    if (found := entries.find(store, stage, key)) is not None:
        digests = found[1]["code"]
        return {"worker": worker.address, "code": list(digests), "digests": digests, "executed": False}

    scratch = Path(worker.local_directory) / "sao-litert" / f"{stage.name}-{uuid.uuid4().hex[:8]}"
    try:
        t0 = time.perf_counter()
        scratch.mkdir(parents=True)
        in_paths = {}
        for role, i in spec["inputs"].items():  # inputs from one client folder share one here
            path = scratch / "in" / str(i["folder"]) / i["name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            if (got := store.get_blob(i["digest"], path)) != i["digest"]:
                raise OSError(f"input {role}: cache blob {i['digest']} holds {got}")
            in_paths[role] = path
        out_paths = {role: scratch / "out" / role / name for role, name in spec["outputs"].items()}
        log_file, depfile = scratch / "log" / f"{stage.name}.log", scratch / "deps.json"
        ran = stage.moved(in_paths, out_paths)
        job = scratch / "job.json"
        job.write_text(json.dumps(ran.job(log_file, depfile, "{profile}", "dask worker")))
        env = child_env(PYTHONUNBUFFERED="1", **{SCHEDULER_ENV: worker.scheduler.address})  # for an Arm worker
        with open(scratch / "console.txt", "wb") as console:
            t_run = time.perf_counter()
            rc = subprocess.call([sys.executable, "-m", "pipeline.core.runner", "--job", str(job)], cwd=REPO,
                                 env=env, stdout=console, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            run_s = time.perf_counter() - t_run
        if rc != 0:
            worker.log_event(EVENT_TOPIC, {"stage": stage.name, "worker": worker.address, "failed": rc})
            line = _error_line(log_file, rc)
            for role, path in in_paths.items():  # the client puts its own paths back
                line = line.replace(str(path), "{%s}" % role)
            raise StageFailed(line, _put_log(store, log_file))
        code = keys.read_depfile(depfile)
        # Signed with the worker's own key ($SAO_LITERT_CACHE_SIGNING_KEY where it runs): a
        # client that trusts keys restores only what a trusted key signed.
        entries.publish(store, ran, key.with_code(code), log_file, signer=signing.env_signer())
        seconds = time.perf_counter() - t0
        worker.log_event(EVENT_TOPIC, {"stage": stage.name, "worker": worker.address, "seconds": seconds,
                                       "run_s": run_s})  # seconds: fetch + run + publish
        return {"worker": worker.address, "code": code, "digests": keys.code_digests(code), "executed": True,
                "seconds": seconds}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _error_line(log_file: Path, rc: int) -> str:
    lines = log_file.read_text(errors="replace").splitlines() if log_file.is_file() else []
    errors = [line[line.index("error:"):] for line in lines if "error:" in line]
    return errors[-1] if errors else f"error: stage exited with status {rc}"


def _put_log(store: Store, log_file: Path) -> str | None:
    if not log_file.is_file():
        return None
    digest = file_digest(log_file)
    store.put_blob(log_file, digest)
    return digest
