"""How much memory each stage needs, and admission of concurrent local stages against the memory
this machine has. The same figure is the `MEM` resource a stage asks of a Dask worker
(pipeline/executor.py).

A stage's need is its measured peak RSS at the tiny and at the real-size preset (`./dev bench`,
bench.json `full_build.stages`), interpolated by the model's size (checkpoint + T5 weights) and
given a margin."""
import logging
import os
import threading
from contextlib import contextmanager

from .config import FileSource, Profile

log = logging.getLogger("sao.memory")

# stage → peak RSS in MB (tiny preset, real-size preset), measured by `./dev bench` on 2 cores.
PEAK_MB = {
    "synth": (411, 2814), "checkpoint": (242, 1838),
    "conditioners_onnx": (432, 2174), "conditioners_tflite": (700, 5050), "verify_conditioners": (429, 2107),
    "dit_reauthor": (364, 3793), "dit_convert": (662, 7049), "dit_quantize": (93, 2360), "verify_dit": (274, 4928),
    "autoencoder_reauthor": (366, 1196), "autoencoder_convert": (675, 4985), "verify_autoencoder": (293, 2187),
    "collect": (93, 252),
}
# Checkpoint + T5 weight bytes of the two presets those peaks were measured on.
MODEL_BYTES = (5_876_263 + 741_824, 1_989_206_371 + 438_525_864)
MARGIN = 1.15
_ENV = "SAO_LITERT_MEMORY"  # bytes this machine may give its stages (default: available memory)


def model_scale(profile: Profile) -> float:
    """0 for the tiny preset, 1 for the real-size one; a model on disk by its bytes."""
    src = profile.source
    if not isinstance(src, FileSource):
        return 1.0 if src.preset == "real" else 0.0
    size = src.checkpoint.stat().st_size + (src.t5_dir / "model.safetensors").stat().st_size
    return max(0.0, (size - MODEL_BYTES[0]) / (MODEL_BYTES[1] - MODEL_BYTES[0]))


def need(stage: str, profile: Profile) -> int:
    """Bytes the stage's process needs at this profile's model size (a stage without figures is
    given the largest ones)."""
    tiny, real = PEAK_MB.get(stage) or (max(t for t, _ in PEAK_MB.values()), max(r for _, r in PEAK_MB.values()))
    return int((tiny + (real - tiny) * model_scale(profile)) * MARGIN * 1e6)


def budget() -> int:
    """Bytes local stages may use together: $SAO_LITERT_MEMORY, else what the OS reports available."""
    if value := os.environ.get(_ENV):
        return int(float(value))
    import psutil
    return psutil.virtual_memory().available


class Admission:
    """Concurrent stages of one doit process: a stage starts when its need fits in what the stages
    already running leave of the budget, or when it would run alone (it cannot do better)."""

    def __init__(self, total: int):
        self.total = self.free = total
        self.running = 0
        self._cv = threading.Condition()

    @contextmanager
    def admit(self, name: str, nbytes: int):
        with self._cv:
            if nbytes > self.free and self.running:
                log.info("  %s: waits for memory (needs %.1f GB, %.1f GB of %.1f GB free)",
                         name, nbytes / 1e9, self.free / 1e9, self.total / 1e9)
            self._cv.wait_for(lambda: nbytes <= self.free or self.running == 0)
            self.free -= nbytes
            self.running += 1
        try:
            yield
        finally:
            with self._cv:
                self.free += nbytes
                self.running -= 1
                self._cv.notify_all()


_admission = None
_admission_lock = threading.Lock()


def admission() -> Admission:
    """The process's one admission controller (doit's threads share it)."""
    global _admission
    with _admission_lock:
        if _admission is None:
            _admission = Admission(budget())
        return _admission
