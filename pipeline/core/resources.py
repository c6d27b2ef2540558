"""What each stage costs, and the admission of concurrent local stages.

Costs are measured by `./dev bench` (bench.json `full_build.stages`, 2 cores): peak RSS at the
tiny and at the real-size preset, interpolated by the model's size (checkpoint + T5 weights)
with a margin, and seconds at real size. The memory figure is also the `MEM` resource a stage
asks of a Dask worker (pipeline/cluster/executor.py).

Admission: a local stage process starts when a core is free and its memory fits in what the
running ones leave of the budget (or it would run alone: it cannot do better); among waiting
stages, the one heading the longest remaining chain of work goes first, so the long conversions
start early and the short steps fill in around them."""
import logging
import os
import threading
from contextlib import contextmanager
from itertools import count

from .config import FileSource, Profile
from .dag import stages
from .stage import Stage

log = logging.getLogger("sao.resources")

# stage → (peak RSS MB tiny preset, peak RSS MB real size, seconds real size), from `./dev bench`
# (the autoencoder rows from a parallel plain-doit build, where stages share the 2 cores).
MEASURED = {
    "synth": (411, 2814, 22.8), "checkpoint": (242, 1838, 6.3),
    "conditioners_onnx": (432, 2174, 11.3), "conditioners_tflite": (700, 5050, 137.1),
    "verify_conditioners": (429, 2107, 4.9),
    "dit_reauthor": (364, 3793, 22.2), "dit_convert": (662, 7049, 57.7),
    "verify_dit": (274, 4928, 14.2),
    "autoencoder_reauthor": (376, 1502, 9.0), "autoencoder_convert": (663, 2488, 18.1),
    "verify_autoencoder": (293, 3278, 76.2),
    "collect": (93, 252, 1.3),
    "attest": (46, 100, 1.0),  # tiny measured (`doit`, default profile); real size estimated (hashes the app set)
    # real-random with every variant (plain doit, one request)
    "select_app": (461, 3639, 245.9),
    # tiny figures measured (`./dev build`, default profile); real size: web_conditioners measured
    # (real-random, plain doit), verify_web estimated (the PyTorch reference as select_app's plus
    # Chromium holding the app set).
    "web_conditioners": (51, 677, 1.5), "verify_web": (462, 6000, 60.0),
}
# Every quantize stage, by the model it quantizes (config "role"): its largest variant's row
# (the conditioners' real size from real-random with every variant, tiny borrowed from the DiT's).
QUANTIZE = {"conditioners": (93, 863, 1.1), "dit": (93, 2360, 3.6), "decoder": (100, 591, 0.8)}
_LARGEST = tuple(max(v[i] for v in (*MEASURED.values(), *QUANTIZE.values()))
                 for i in range(3))  # a stage not measured yet
# The aarch64 check's emulated work (stages/verify_aarch64.py under qemu, Cortex-A710, 2 threads):
# seconds of one invoke at the tiny preset (the default build's record, logs/verify_aarch64.json
# "measured") and at real size (real-random, notes on issues 21 and 29): what `plan_aarch64` adds up.
EMULATED = {"start": (9.0, 30.0), "conditioners": (0.3, 35.0), "dit": (0.05, 55.0),
            "dit_step": (0.05, 250.0),  # a generation's step (real size: 8 steps of the 8-step run)
            "decoder_int8": (2.0, 380.0), "decoder_float": (2.0, 1300.0), "decoder_fp16": (6.0, 640.0)}
_DECODER_COST = {"float32": "decoder_float", "float16": "decoder_float", "dynamic_int8": "decoder_int8",
                 "dynamic_int8_float_ends": "decoder_int8"}
# Checkpoint + T5 weight bytes of the two presets those figures were measured on.
MODEL_BYTES = (5_876_263 + 741_824, 1_989_206_371 + 438_525_864)
MARGIN = 1.15
# A stage this short at real size (collect, attest, web_conditioners: file copies) takes no core:
# it never waits behind long stages holding them all (at real size on 2 cores, collect had waited
# 146 s for verify_web and verify_aarch64, which need the bundle's inputs, not the bundle).
QUICK_S = 2.0
_ENV = "SAO_LITERT_MEMORY"  # bytes this machine may give its stages (default: available memory)


def model_scale(profile: Profile) -> float:
    """0 for the tiny preset, 1 for the real-size one; a model on disk by its bytes."""
    src = profile.source
    if not isinstance(src, FileSource):
        return 1.0 if src.preset == "real" else 0.0
    size = src.checkpoint.stat().st_size + (src.t5_dir / "model.safetensors").stat().st_size
    return max(0.0, (size - MODEL_BYTES[0]) / (MODEL_BYTES[1] - MODEL_BYTES[0]))


def _row(stage: Stage) -> tuple:
    """A stage's figures; every variant's quantize stage has its model's."""
    if stage.module == "quantize":
        return QUANTIZE[stage.config["role"]]
    return MEASURED.get(stage.name, _LARGEST)


def quick(stage: Stage) -> bool:
    return _row(stage)[2] < QUICK_S


def need(stage: Stage, profile: Profile) -> int:
    """Bytes the stage's process needs at this profile's model size."""
    tiny, real, _ = _row(stage)
    return int((tiny + (real - tiny) * model_scale(profile)) * MARGIN * 1e6)


def remaining_seconds(stages) -> dict[str, float]:
    """Per stage: its real-size seconds plus the longest chain of stages that wait for it."""
    producer = {path: s.name for s in stages for path in s.outputs.values()}
    by_name = {s.name: s for s in stages}
    after = {s.name: set() for s in stages}
    for s in stages:
        for path in s.inputs.values():
            if path in producer:
                after[producer[path]].add(s.name)
    memo = {}

    def rest(name):
        if name not in memo:
            memo[name] = _row(by_name[name])[2] + max((rest(n) for n in after[name]), default=0.0)
        return memo[name]
    return {s.name: rest(s.name) for s in stages}


def budget() -> int:
    """Bytes local stages may use together: $SAO_LITERT_MEMORY, else what the OS reports available."""
    if value := os.environ.get(_ENV):
        return int(float(value))
    import psutil
    return psutil.virtual_memory().available


class Admission:
    """The stage processes of one doit process: at most `slots` holding a core at once, all within
    `total` bytes."""

    def __init__(self, total: int, slots: int):
        self.total = self.free = total
        self.slots, self.running = slots, 0
        self._waiting: list[tuple[float, int, int, bool]] = []  # (priority, arrival, bytes, needs a core)
        self._arrival = count()
        self._cv = threading.Condition()

    def _fits(self, nbytes: int) -> bool:
        return nbytes <= self.free or self.free == self.total  # more than the budget: alone

    def _turn(self, me) -> bool:
        if not me[3]:
            return self._fits(me[2])
        if self.running >= self.slots:
            return False
        ready = [w for w in self._waiting if w[3] and self._fits(w[2])]
        return bool(ready) and max(ready, key=lambda w: (w[0], -w[1])) is me

    @contextmanager
    def admit(self, name: str, nbytes: int, priority: float = 0.0, core: bool = True):
        with self._cv:
            me = (priority, next(self._arrival), nbytes, core)
            self._waiting.append(me)
            if not self._fits(nbytes):
                log.info("  %s: waits for memory (needs %.1f GB, %.1f GB of %.1f GB free)",
                         name, nbytes / 1e9, self.free / 1e9, self.total / 1e9)
            self._cv.wait_for(lambda: self._turn(me))
            self._waiting.remove(me)
            self.free -= nbytes
            self.running += core
            self._cv.notify_all()
        try:
            yield
        finally:
            with self._cv:
                self.free += nbytes
                self.running -= core
                self._cv.notify_all()


_admission = None  # the machine's: one per process, whatever the profile
_lock = threading.Lock()


def admission() -> Admission:
    """The process's one admission controller (doit's threads share it): a slot per core."""
    global _admission
    with _lock:
        if _admission is None:
            _admission = Admission(budget(), os.cpu_count() or 1)
        return _admission


def plan_aarch64(profile: Profile, scale: float | None = None) -> dict[str, float]:
    """The emulated seconds the profile's aarch64 check plans, by part and in all ("seconds"), at
    the model's size (`scale`: 0 tiny … 1 real, model_scale by default), from the check's row in
    the stage table (what it runs: its config and inputs). The app's conditioners are not known
    before select_app: one more is counted when a candidate is not among those checked anyway."""
    scale = model_scale(profile) if scale is None else scale
    [check] = [s for s in stages(profile) if s.module == "verify_aarch64"]
    c, checked = check.config, check.given.get("conditioners", {})

    def cost(kind: str) -> float:
        tiny, real = EMULATED[kind]
        return tiny + (real - tiny) * scale
    conds = len(checked) + bool({"float32", *c["gates"]["conditioners"]} - set(checked))
    parts = {"start": cost("start"), "conditioners": len(c["prompts"]) * conds * cost("conditioners"),
             "dit": c["dit_cases"] * cost("dit"),
             "decoders": c["latents"] * sum(cost(_DECODER_COST[q]) for q in c["decoders"]),
             "decoder_force_fp16": c["latents"] * cost("decoder_fp16"),
             "generation": (cost("conditioners") + c["steps"] * cost("dit_step") + cost("decoder_fp16")
                            if c["steps"] else 0.0)}
    return {**parts, "seconds": sum(parts.values())}
