"""Running .tflite files through ai_edge_litert by signature and tensor names, or by position as
a C++ client does (`by_position`: the subgraph's tensor order, which runtime/vocab.py's contracts
fix).

With a weight-cache folder, a model runs as a LiteRT CompiledModel whose XNNPACK weight cache is
a file in that folder: the first process start packs the weights into it, later ones map it
instead of packing again (the real-size int8 DiT: load + first invoke 0.21 s instead of 0.6 s).
The file is named by the model's digest, written under a temporary name and renamed, so a
rebuilt model or two processes starting at once never read a partial or stale cache. Models
with inputs CompiledModel's Python buffers cannot hold (int64 token ids), and any folder that
cannot be written, fall back to the Interpreter.

`xnnpack_flags` runs a model as a CompiledModel with those XNNPACK flags (runtime/vocab.py; FORCE_FP16 is what
the Arm reference app sets for the decoder; on x86 XNNPACK only emulates fp16, so its numbers
mean something on Arm kernels)."""
import atexit
import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

SIGNATURE = "serving_default"
_BUFFER_DTYPES = {np.dtype(np.float32), np.dtype(np.int32)}
log = logging.getLogger("sao.litert")


@contextlib.contextmanager
def _quiet_stderr():
    """LiteRT's C++ runtime logs INFO lines (accelerator registry, plugins) to fd 2 while it
    creates an environment or a model; its errors still arrive as Python exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class ContractError(ValueError):
    """A file whose tensors are not where its client addresses them (runtime/vocab.py), or an
    array written to a position whose tensor has another dtype or size: one line."""


class Model:
    def __init__(self, path, threads: int = 2, weight_cache: tuple[Path, str] | None = None,
                 xnnpack_flags: int | None = None):
        """weight_cache: (folder, the file's xxh3_128 from the manifest, which names its cache file)."""
        from ai_edge_litert.interpreter import Interpreter
        self.path = str(path)
        self.interpreter = Interpreter(model_path=self.path, num_threads=threads)
        sigs = self.interpreter.get_signature_list()
        if SIGNATURE not in sigs:
            raise ValueError(f"{path}: no '{SIGNATURE}' signature (has {sorted(sigs)})")
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        # Signature names in the subgraph's order: what `interpreter->inputs()[i]` is in C++.
        self.positions = {kind: [next(n for n, d in sig.items() if d["index"] == t["index"]) for t in order]
                          for kind, sig, order in (("inputs", self.inputs, self.interpreter.get_input_details()),
                                                   ("outputs", self.outputs, self.interpreter.get_output_details()))}
        self.compiled = None
        dtypes = {np.dtype(d["dtype"]) for d in (*self.inputs.values(), *self.outputs.values())}
        if xnnpack_flags is not None:
            if not dtypes <= _BUFFER_DTYPES:
                raise ValueError(f"{path}: xnnpack_flags need a CompiledModel, which cannot hold its "
                                 f"{sorted(d.name for d in dtypes - _BUFFER_DTYPES)} tensors")
            self.compiled = _compiled(Path(path), threads, weight_cache, xnnpack_flags)
            if self.compiled is None:
                raise RuntimeError(f"{path}: no CompiledModel with xnnpack_flags={xnnpack_flags}")
        elif weight_cache is not None and dtypes <= _BUFFER_DTYPES:
            self.compiled = _compiled(Path(path), threads, weight_cache)
        if self.compiled is not None:  # the interpreter only told us the signature
            self.interpreter = self.runner = None
            self._in = {n: self.compiled.create_input_buffer_by_name(SIGNATURE, n) for n in self.inputs}
            self._out = {n: self.compiled.create_output_buffer_by_name(SIGNATURE, n) for n in self.outputs}

    def __call__(self, **inputs) -> dict:
        feed = {k: np.asarray(v, dtype=self.inputs[k]["dtype"]) for k, v in inputs.items()}
        if self.compiled is None:
            return self.runner(**feed)
        with _quiet_stderr():  # the first write logs the creation of another environment
            for k, v in feed.items():
                self._in[k].write(np.ascontiguousarray(v))
            self.compiled.run_by_name(SIGNATURE, self._in, self._out)
            return {k: b.read(int(np.prod(self.outputs[k]["shape"])), self.outputs[k]["dtype"])
                    .reshape(self.outputs[k]["shape"]) for k, b in self._out.items()}

    def by_position(self, *arrays) -> list:
        """Feed input i with arrays[i] and return the outputs in order, as a client that addresses
        tensors by position does. It writes raw memory (`typed_tensor<T>`), so an array whose
        dtype or size is not the tensor's at that position is a ContractError here, where the
        client would overflow or misread a buffer."""
        if len(arrays) != len(self.positions["inputs"]):
            raise ContractError(f"{self.path}: {len(arrays)} inputs given, the file has {len(self.positions['inputs'])}")
        feed = {}
        for i, (name, a) in enumerate(zip(self.positions["inputs"], arrays)):
            d = self.inputs[name]
            if np.dtype(a.dtype) != np.dtype(d["dtype"]) or a.size != int(np.prod(d["shape"])):
                raise ContractError(f"{self.path}: input {i} is {name} ({np.dtype(d['dtype']).name} "
                                    f"{list(map(int, d['shape']))}); the client writes {a.dtype.name} {list(a.shape)}")
            feed[name] = a.reshape(d["shape"])
        out = self(**feed)
        return [out[name] for name in self.positions["outputs"]]

    def describe(self) -> dict:
        """The tensors in position order (what a C++ app addresses): signature name, raw tensor
        index, shape, dtype."""
        def rows(kind, details):
            return [{"position": i, "name": n, "index": int(details[n]["index"]),
                     "shape": [int(s) for s in details[n]["shape"]], "dtype": np.dtype(details[n]["dtype"]).name}
                    for i, n in enumerate(self.positions[kind])]
        return {"signature": SIGNATURE, "inputs": rows("inputs", self.inputs), "outputs": rows("outputs", self.outputs)}


_ENV = None


def _quiet_exit():
    """The runtime logs each accelerator it destroys at exit; nothing else is left to say then."""
    sys.stderr.flush()
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)


def _compiled(path: Path, threads: int, weight_cache: tuple[Path, str] | None, flags: int | None = None):
    """A CompiledModel, with its XNNPACK weight cache in folder/<name>.<digest>.xnnpack when
    `weight_cache` is (folder, digest), or None when it cannot be made."""
    global _ENV
    from ai_edge_litert.compiled_model import CompiledModel, _create_default_environment
    from ai_edge_litert.cpu_options import CpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options
    folder = final = target = None
    if weight_cache is not None:
        folder = Path(weight_cache[0])
        final = folder / f"{path.name}.{weight_cache[1][:16]}.xnnpack"
        target = final if final.is_file() else final.with_name(f"{final.name}.tmp-{os.getpid()}")
    try:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        with _quiet_stderr():
            if _ENV is None:
                _ENV = _create_default_environment()
                atexit.register(_quiet_exit)
            options = Options(hardware_accelerators=HardwareAccelerator.CPU,
                              cpu_options=CpuOptions(num_threads=threads, xnnpack_flags=flags,
                                                     xnnpack_weight_cache_path=str(target or "")))
            model = CompiledModel.from_file(str(path), environment=_ENV, options=options)
    except (OSError, RuntimeError) as e:
        log.warning("%s: runs without a weight cache (%s)", path.name, str(e).splitlines()[0])
        if target is not None:
            with contextlib.suppress(OSError):  # a partial or unreadable cache: the next start rebuilds it
                target.unlink(missing_ok=True)
        return None
    if target != final:
        os.replace(target, final)
        for stale in folder.glob(f"{path.name}.*.xnnpack"):
            if stale != final:
                stale.unlink(missing_ok=True)
    return model
