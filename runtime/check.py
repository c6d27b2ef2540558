"""`python -m runtime.check WORK`: run the bundle's models on given inputs with the runtime's own
code and write what they return, for a check made elsewhere (the build's aarch64 verification
runs this module under emulation; pipeline/… never runs in that process).

WORK/request.json: {"bundle", "threads", "invokes": [{"id", "model", "inputs": {name: npz key},
"xnnpack_flags"}], "generate": {"files": {role: file in bundle}, "layout", "prompt", "seconds",
"steps", "noise": [npz keys]} or null}; WORK/inputs.npz holds the arrays. The generation is the
layout's client flow (runtime/client.py: the Arm app's, tensors by position, its XNNPACK flags).
Writes WORK/outputs.npz ("<id>/<output>", and "generate/latent", "generate/audio") and
WORK/result.json: the machine as this process sees it,
the runtime's versions and the seconds each part took (an invoke of the model the one before it
ran reuses that load: order invokes by model)."""
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from . import client
from .litert import Model
from .vocab import SPIECE


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
        "seconds": seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
