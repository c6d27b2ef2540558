"""Pydantic schema of the build profile (TOML) and where artifacts go. The model's own
config (model_config.json) is model_config.py."""
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runtime.vocab import ROLES, SPIECE

from .errors import InputError, pydantic_error
from .hf import locate
from .model_config import CHECKPOINT_FILES, read_text

REPO = Path(__file__).resolve().parents[2]  # the checkout this code is in (dodo.py's folder)
DEFAULT_PROFILE = REPO / "profiles" / "default.toml"
_ARTIFACTS_ENV = "SAO_LITERT_ARTIFACTS"  # another folder for artifacts/ (the tests use their own)


def artifacts_root() -> Path:
    return Path(os.environ.get(_ARTIFACTS_ENV) or REPO / "artifacts").resolve()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# ---------------------------------------------------------------- build profile
class SyntheticSource(_Strict):
    """The embedded default: a seeded synthetic model written in the real file formats."""
    kind: Literal["synthetic"]
    seed: int = 0
    preset: Literal["tiny", "real"] = "tiny"


T5_FILES = ("config.json", "model.safetensors", SPIECE)


class FileSource(_Strict):
    """A model on local disk (the real SAOS, a fine-tune …): `model`/`t5` name a folder or a
    Hugging Face repo id in the local cache (pipeline/hf.py), or the three paths are given."""
    kind: Literal["files"]
    model: str | None = None        # folder or repo id holding model_config.json + model.safetensors|.ckpt
    revision: str | None = None     # of `model` in the Hugging Face cache (default: main)
    t5: str | None = None           # folder or repo id holding config.json, model.safetensors, spiece.model
    t5_revision: str | None = None
    model_config_json: Path | None = None
    checkpoint: Path | None = None
    t5_dir: Path | None = None


ConditionersVariant = Literal["float32", "float16", "dynamic_wi8_afp32", "dynamic_wi4_afp32"]
DitRecipe = Literal["dynamic_wi8_afp32", "weight_only_wi8_afp32", "dynamic_wi4_afp32", "dynamic_wi4ff_wi8_afp32"]
DecoderPrecision = Literal["float32", "dynamic_int8", "dynamic_int8_float_ends", "float16"]


class _Variants(_Strict):
    """A model's precision variants, one shape for the three models: `variants` (each built by
    its own stage, gated against PyTorch on its own threshold) and `app`, the one the app loads:
    pinned, or "auto" (chosen by [app]). A variant failing its gate is reported and left out of
    the choice; it fails the build only when pinned."""
    app: str = "auto"
    # Per-variant gates, SNR (dB) against PyTorch, over the defaults in GATES.
    variant_min_snr_db: dict[str, float] = {}
    GATES: ClassVar[dict[str, float]] = {}
    FROM_FLOAT32: ClassVar[bool] = True  # float32 is built, the reference the others are made from
    MOVED: ClassVar[dict[str, str]] = {}  # an earlier field → how to say it now ({value}: its value)

    def min_snr(self, variant: str) -> float:
        return self.variant_min_snr_db.get(variant, self.GATES.get(variant))

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data):
        for old, now in cls.MOVED.items():
            if isinstance(data, dict) and old in data:
                raise ValueError(f"{old} is gone: {now.format(value=json.dumps(data[old]))} (one shape for every "
                                 "model: variants = [...], app = ...)")
        return data

    @model_validator(mode="after")
    def _check_variants(self):
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants {self.variants} name one twice")
        if not self.variants:
            raise ValueError("variants is empty")
        self.app = self.app or self.variants[0]  # the DiT's default: its main variant
        if self.FROM_FLOAT32 and "float32" not in self.variants:
            raise ValueError("variants must include float32 (the other variants are made from it)")
        if unknown := set(self.variant_min_snr_db) - set(self.GATES):
            raise ValueError(f"variant_min_snr_db: no variant {', '.join(sorted(unknown))} (variants with a "
                             f"threshold here: {', '.join(self.GATES)})")
        if self.app not in ("auto", *self.variants):
            raise ValueError(f"app '{self.app}' is not one of variants {self.variants} (or \"auto\")")
        return self


class ConditionersSettings(_Variants):
    # float32 and float16 come from onnx2tf; the dynamic_* ones are quantized from the float32
    # file (ai-edge-quantizer, pipeline/core/recipes.py). float32 is always built.
    variants: list[ConditionersVariant] = ["float32", "float16"]
    app: Literal["auto"] | ConditionersVariant = "float32"
    GATES: ClassVar[dict[str, float]] = {"dynamic_wi8_afp32": 25.0, "dynamic_wi4_afp32": 15.0}
    opset: int = 15
    # Keyword arguments of onnx2tf.convert (its CLI flags' long names). Keeping the input shapes
    # as given (-kat) stops NCW/NWC guessing on [1, L].
    onnx2tf: dict[str, Any] = {"keep_shape_absolutely_input_names": ["input_ids", "attention_mask", "seconds_total"],
                               "verbosity": "warn"}
    prompts: list[str] = ["warm analog synth pad with slow attack",
                          "128 BPM techno drum loop", "", "rain on a tin roof, distant thunder"]
    seconds: list[float] = [10.0, 0.0, 300.0, -5.0]  # includes out-of-range values (clamped)
    max_rel_fp32: float = 1e-4
    min_snr_fp16_db: float = 40.0

    def min_snr(self, variant):
        return self.min_snr_fp16_db if variant == "float16" else super().min_snr(variant)


class DitSettings(_Variants):
    # The DiT is always quantized from the float32 conversion (never bundled). Each variant is a
    # recipe (stage dit_quantize_<recipe>); the first is the main one: dit_model.tflite, stage
    # dit_quantize (`doit dit_tflite`), gated by min_snr_quant_db, the app's unless `app` says
    # otherwise. dynamic_wi4ff_wi8_afp32: int4 weights on the feed-forward layers, int8 elsewhere.
    variants: list[DitRecipe] = ["dynamic_wi8_afp32"]
    app: Literal["auto"] | DitRecipe | None = None  # None: the first of variants
    GATES: ClassVar[dict[str, float]] = {"dynamic_wi8_afp32": 28.0, "weight_only_wi8_afp32": 28.0,
                                         "dynamic_wi4_afp32": 15.0, "dynamic_wi4ff_wi8_afp32": 18.0}
    FROM_FLOAT32: ClassVar[bool] = False  # from the float32 conversion, which is not a variant
    MOVED: ClassVar[dict[str, str]] = {"quant_recipe": "name it first in variants (variants = [{value}, ...])"}
    max_rel_fp32: float = 1e-4
    min_snr_quant_db: float = 28.0  # the first variant's gate
    verify_cases: int = 4

    @property
    def main(self) -> str:
        """The recipe of dit_model.tflite (stage dit_quantize)."""
        return self.variants[0]

    def min_snr(self, variant):
        return self.min_snr_quant_db if variant == self.main else super().min_snr(variant)


class AutoencoderSettings(_Variants):
    # Decoder variants. float32 is always built (the others are quantized from it): dynamic_int8,
    # int8 weights and compute on every conv; dynamic_int8_float_ends, the same with the first and
    # last convs left float32; float16, float16 weights (FLOAT_CASTING).
    variants: list[DecoderPrecision] = ["float32"]
    # The one the app loads (autoencoder_model.tflite in the Arm layout), or "auto" ([app]).
    app: Literal["auto"] | DecoderPrecision = "float32"
    GATES: ClassVar[dict[str, float]] = {"dynamic_int8_float_ends": 25.0, "float16": 40.0}
    MOVED: ClassVar[dict[str, str]] = {"precisions": "say variants = {value}"}
    max_rel_fp32: float = 1e-4
    # Used only when the fp32 reference itself differs from fp64 by more than max_rel_fp32.
    min_snr_db: float = 60.0
    # dynamic_int8 vs the PyTorch decoder (audio SNR, worst of the fixed latents). Measured:
    # 31.1 dB at real size (random weights).
    min_snr_int8_db: float = 25.0

    def min_snr(self, variant):
        return self.min_snr_int8_db if variant == "dynamic_int8" else super().min_snr(variant)


class TargetsSettings(_Strict):
    """Where the bundle is verified besides x86-64 (stages/verify_aarch64.py)."""
    # aarch64 LiteRT kernels, emulated (qemu user mode; `./dev aarch64` sets the userland up).
    aarch64: bool = True
    # The Arm reference app's decoder setting, XNNPACK FORCE_FP16: audio SNR vs PyTorch (worst of
    # the fixed latents). Measured on the default (tiny) decoder: 53.6 dB against x86 float32.
    min_snr_fp16_db: float = 30.0
    # The Arm CPU qemu emulates, and so the kernels LiteRT/XNNPACK pick: an Armv9 phone core
    # (NEON, dot-product, i8mm, fp16, SVE2; no SME) by default. "max" adds SME/SME2 (KleidiAI's
    # SME kernels, emulated more slowly), "neoverse-n1" is Armv8.2 (dot-product, no i8mm).
    aarch64_cpu: Literal["cortex-a710", "cortex-a76", "cortex-a55", "neoverse-n1", "neoverse-n2",
                         "neoverse-v1", "max"] = "cortex-a710"
    # A whole generation on aarch64 (0: none; emulation runs tens of times slower than native).
    aarch64_steps: int = Field(8, ge=0)
    aarch64_dit_cases: int = Field(2, ge=1)
    aarch64_latents: int = Field(2, ge=1)  # decoder inputs (unit-variance latents) checked
    aarch64_prompts: int = Field(0, ge=0)  # the first N of [conditioners] prompts (0: all)
    # Decoder checks: "all", every bundled precision plus the app's file with FORCE_FP16; "app",
    # only the app's file as the Arm app runs it (FORCE_FP16): for real-size models.
    aarch64_decoders: Literal["all", "app"] = "all"
    # End to end against the same flow on x86 (kernel drift: where the int8 kernels differ); against
    # PyTorch (precision) the generation is gated by [app] min_latent_snr_db / min_audio_snr_db.
    min_latent_snr_vs_x86_db: float = 20.0
    min_audio_snr_vs_x86_db: float = 20.0
    # The web client: LiteRT.js in headless Chromium (stages/verify_web.py; `./dev env` installs it,
    # `apt-get install chromium`), each model against this runtime (kernel drift) and one generation.
    web: bool = True
    web_min_snr_db: float = 20.0
    web_timeout_s: int = Field(1800, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data):
        for old in ("min_latent_snr_db", "min_audio_snr_db"):
            if isinstance(data, dict) and old in data:
                raise ValueError(f"{old} moved to [app] {old}: one threshold for select_app and the aarch64 check")
        return data


class CacheSettings(_Strict):
    """The shared build cache (pipeline/cache/). Not part of any stage's key."""
    url: str | None = None  # any fsspec URL: file:///mnt/cache, s3://bucket/prefix, gs://…
    mode: Literal["read-write", "read", "off"] = "off"
    # What a restore downloads: "toplevel", only the files no stage reads (bundle, reports, logs),
    # the others staying in the store until a stage that runs needs them (pipeline/cache/remote.py);
    # "all", every output.
    download: Literal["toplevel", "all"] = "toplevel"
    # fsspec storage options, e.g. {endpoint_url = "http://127.0.0.1:8333"} for an S3-compatible
    # store. Credentials belong in the store's own mechanisms (AWS environment/profiles), not here.
    options: dict[str, Any] = {}
    # Signed entries (pipeline/cache/signing.py): a writer signs what it uploads with this private
    # key file (`sao-litert cache keygen`); a reader with trusted keys ("NAME:BASE64" lines of
    # .pub files) restores only entries one of them signed. No trusted keys: any entry is used.
    signing_key: str | None = None
    trusted_keys: list[str] = []
    # How many distinct trusted keys must have signed an entry (and its deps record) for a restore
    # to use it: builders that rebuilt it and got the same bytes co-sign (`cache verify --rebuild`).
    signatures_needed: int = Field(1, ge=1)


class ExecutorSettings(_Strict):
    """Where stage processes run (pipeline/cluster/executor.py). Not part of any stage's key."""
    kind: Literal["local", "dask"] = "local"
    scheduler: str | None = None  # the Dask scheduler's address, tcp://host:8786 (kind = "dask")


class AppSettings(_Strict):
    """Which variants the app loads where a model's `app` is "auto" (stages/select_app.py): the
    combinations of the variants that passed their own gates, run end to end on fixed requests
    (the first `requests` of [conditioners] prompts, [generate] steps, seeded noise) against
    PyTorch; of those meeting every constraint, the best by `objective`."""
    objective: Literal["smallest", "fastest"] = "smallest"  # app-set bytes, or warm generation seconds
    max_bytes: int | None = Field(None, gt=0)  # the three models the app loads, together
    # The final latent and the decoded audio against PyTorch's with the same noise, as the layout's
    # client runs the set: select_app's constraints and the aarch64 generation's gates alike.
    min_latent_snr_db: float = 20.0
    min_audio_snr_db: float = 20.0
    requests: int = Field(1, ge=1)
    timing_runs: int = Field(3, ge=1)  # warm invokes per variant (the median is reported)
    # "arm": the app set under the Arm app's fixed names (conditioners_float32.tflite, dit_model.tflite,
    # autoencoder_model.tflite) whatever their precision (the manifest records it); "roles":
    # conditioners.tflite, dit.tflite, autoencoder.tflite.
    layout: Literal["arm", "roles"] = "arm"
    # Every built variant also under bundle/variants/ (`generate --variant`), or left out.
    bundle_variants: bool = True


class GenerateSettings(_Strict):
    steps: int = Field(8, ge=1)


class Profile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    source: Annotated[Union[SyntheticSource, FileSource], Field(discriminator="kind")]
    conditioners: ConditionersSettings = ConditionersSettings()
    dit: DitSettings = DitSettings()
    autoencoder: AutoencoderSettings = AutoencoderSettings()
    generate: GenerateSettings = GenerateSettings()
    app: AppSettings = AppSettings()
    targets: TargetsSettings = TargetsSettings()
    cache: CacheSettings = CacheSettings()
    executor: ExecutorSettings = ExecutorSettings()
    path: Path = Field(exclude=True)

    @property
    def out(self) -> Path:
        return artifacts_root() / self.name

    @property
    def models(self) -> dict[str, _Variants]:
        """Role → its section: each with `variants`, `app` and their gates."""
        return dict(zip(ROLES, (self.conditioners, self.dit, self.autoencoder)))


def load_profile(path=None) -> Profile:
    path = Path(path or DEFAULT_PROFILE).resolve()
    try:
        raw = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as e:
        raise InputError(path, None, f"malformed TOML: {e}") from None
    raw.setdefault("name", path.stem)
    try:
        profile = Profile.model_validate({**raw, "path": path})
    except ValidationError as e:
        raise pydantic_error(path, e) from None
    if isinstance(profile.source, FileSource):
        _resolve_files(profile.source, path)
    return profile


def _resolve_files(src: FileSource, path: Path):
    """Fill the three paths from `model`/`t5` (folders or cached repo ids) and check them.
    Relative paths are relative to the profile."""
    if src.model:
        folder = _locate(src.model, src.revision, path, "source.model")
        if not (folder / "model_config.json").is_file():
            raise InputError(path, "source.model", f"{folder} has no model_config.json")
        ckpts = [folder / n for n in CHECKPOINT_FILES if (folder / n).is_file()]
        if not ckpts:
            raise InputError(path, "source.model", f"{folder} has neither {' nor '.join(CHECKPOINT_FILES)}")
        src.model_config_json = src.model_config_json or folder / "model_config.json"
        src.checkpoint = src.checkpoint or ckpts[0]  # safetensors first: no pickle at all
    if src.t5:
        src.t5_dir = src.t5_dir or _locate(src.t5, src.t5_revision, path, "source.t5")
    for field, alt in (("model_config_json", "model"), ("checkpoint", "model"), ("t5_dir", "t5")):
        p = getattr(src, field)
        if p is None:
            raise InputError(path, f"source.{alt}", f"missing: give `{alt}` (a folder or a Hugging Face "
                                                    f"repo id) or `{field}`")
        p = p if p.is_absolute() else path.parent / p
        if not p.exists():
            raise InputError(path, f"source.{field}", f"{p} does not exist")
        setattr(src, field, p)
    missing = [n for n in T5_FILES if not (src.t5_dir / n).is_file()]
    if missing:
        raise InputError(path, "source.t5" if src.t5 else "source.t5_dir",
                         f"{src.t5_dir} has no {', '.join(missing)} (a T5 folder holds {', '.join(T5_FILES)})")


def _locate(spec, revision, path, field) -> Path:
    try:
        return locate(spec, revision, path.parent)
    except LookupError as e:
        raise InputError(path, field, str(e)) from None
