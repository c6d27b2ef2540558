"""`python -m runtime.check WORK`: run the bundle's models on given inputs with the runtime's own
code and write what they return, for a check made elsewhere (the build's aarch64 verification
runs this module under emulation; pipeline/… never runs in that process).

WORK/request.json: {"bundle", "threads", "invokes": [{"id", "model", "inputs": {name: npz key},
"xnnpack_flags"}], "generate": {"files": {role: file in bundle}, "layout", "prompt", "seconds",
"steps", "noise": [npz keys]} or null}; WORK/inputs.npz holds the arrays. The generation is the
layout's client flow (runtime/client.py: the Arm app's, tensors by position, its XNNPACK flags).
Writes WORK/outputs.npz ("<id>/<output>", and "generate/latent", "generate/audio") and
WORK/result.json: the machine as this process sees it, the runtime's versions, the emulator and
CPU when emulated ($SAO_LITERT_EMULATED) and the seconds each part took (an invoke of the model
the one before it ran reuses that load: order invokes by model).

On an Arm worker of the build's Dask cluster the same module runs natively: `run_sent` is the
task (pipeline/core/aarch64.py sends it the request, the inputs and the files it names)."""
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from . import client
from .litert import Model
from .vocab import SPIECE

EMULATED_ENV = "SAO_LITERT_EMULATED"  # set by whoever runs this module emulated: {"emulator", "cpu"}


def main(work: Path) -> int:
    request = json.loads((work / "request.json").read_text())
    bundle, threads = Path(request["bundle"]), request["threads"]
    arrays = dict(np.load(work / "inputs.npz"))
    outputs, seconds, loaded, model = {}, {}, None, None
    for inv in request["invokes"]:
        t0 = time.perf_counter()
        if loaded != (inv["model"], inv.get("xnnpack_flags")):  # consecutive invokes share a load
            model = None
            loaded = (inv["model"], inv.get("xnnpack_flags"))
            model = Model(bundle / inv["model"], threads, xnnpack_flags=inv.get("xnnpack_flags"))
        for name, value in model(**{k: arrays[v] for k, v in inv["inputs"].items()}).items():
            outputs[f"{inv['id']}/{name}"] = value
        seconds[inv["id"]] = time.perf_counter() - t0
    if (g := request.get("generate")) is not None:
        t0 = time.perf_counter()
        audio, latent = client.generate({r: bundle / f for r, f in g["files"].items()}, bundle / SPIECE, g["prompt"],
                                        g["seconds"], [arrays[k] for k in g["noise"]], g["steps"], threads, g["layout"])
        outputs["generate/audio"], outputs["generate/latent"] = audio, latent
        seconds["generate"] = time.perf_counter() - t0
    np.savez(work / "outputs.npz", **outputs)
    versions = {d: metadata.version(d) for d in ("ai-edge-litert", "numpy")}
    (work / "result.json").write_text(json.dumps({
        "machine": platform.machine(), "python": platform.python_version(), "versions": versions,
        "emulated": json.loads(os.environ.get(EMULATED_ENV) or "null"),
        "seconds": seconds}, indent=1))
    return 0


def files_of(request: dict) -> set[str]:
    """The bundle's files a request reads."""
    g = request.get("generate")
    return {inv["model"] for inv in request["invokes"]} | ({*g["files"].values(), SPIECE} if g else set())


def read_back(work: Path) -> tuple[dict, dict]:
    """What `main` wrote: (result.json, outputs by "<id>/<output>")."""
    return json.loads((work / "result.json").read_text()), dict(np.load(work / "outputs.npz"))


def run_sent(request: dict, inputs: bytes, files: dict[str, bytes]) -> tuple[dict, dict]:
    """`main` on a request sent with its inputs (inputs.npz's bytes) and files (name → bytes), in a
    scratch folder: (result.json, outputs)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bundle").mkdir()
        for name, data in files.items():
            (work / "bundle" / name).write_bytes(data)
        (work / "inputs.npz").write_bytes(inputs)
        (work / "request.json").write_text(json.dumps({**request, "bundle": str(work / "bundle")}))
        main(work)
        return read_back(work)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
