"""Pydantic schema of the build profile (TOML) and where artifacts go. The model's own
config (model_config.json) is model_config.py."""
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


T5_FILES = ("config.json", "model.safetensors", "spiece.model")


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


class ConditionersSettings(_Strict):
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


class DitSettings(_Strict):
    quant_recipe: Literal["dynamic_wi8_afp32", "weight_only_wi8_afp32", "dynamic_wi4_afp32"] = "dynamic_wi8_afp32"
    max_rel_fp32: float = 1e-4
    min_snr_quant_db: float = 28.0
    verify_cases: int = 4


DecoderPrecision = Literal["float32", "dynamic_int8"]


class AutoencoderSettings(_Strict):
    # Decoder files built and bundled. float32 is always built (the others are quantized from
    # it); dynamic_int8: int8 weights and compute on every conv (stages/quantize.py).
    precisions: list[DecoderPrecision] = ["float32"]
    app: DecoderPrecision = "float32"  # the one that becomes the bundle's autoencoder_model.tflite
    max_rel_fp32: float = 1e-4
    # Used only when the fp32 reference itself differs from fp64 by more than max_rel_fp32.
    min_snr_db: float = 60.0
    # dynamic_int8 vs the PyTorch decoder (audio SNR, worst of the fixed latents). Measured:
    # 31.1 dB at real size (random weights).
    min_snr_int8_db: float = 25.0

    @model_validator(mode="after")
    def _app_is_built(self):
        if "float32" not in self.precisions:
            raise ValueError("precisions must include float32 (the other precisions are made from it)")
        if self.app not in self.precisions:
            raise ValueError(f"app '{self.app}' is not one of precisions {self.precisions}")
        return self


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
    # End to end, the final latent / audio against PyTorch with the same noise, and against the
    # same bundle run on x86 (where the int8 kernels differ).
    min_latent_snr_db: float = 20.0
    min_audio_snr_db: float = 20.0
    min_latent_snr_vs_x86_db: float = 20.0
    min_audio_snr_vs_x86_db: float = 20.0


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


class ExecutorSettings(_Strict):
    """Where stage processes run (pipeline/cluster/executor.py). Not part of any stage's key."""
    kind: Literal["local", "dask"] = "local"
    scheduler: str | None = None  # the Dask scheduler's address, tcp://host:8786 (kind = "dask")


class GenerateSettings(_Strict):
    steps: int = Field(8, ge=1)


class Profile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    source: Annotated[Union[SyntheticSource, FileSource], Field(discriminator="kind")]
    conditioners: ConditionersSettings = ConditionersSettings()
    dit: DitSettings = DitSettings()
    autoencoder: AutoencoderSettings = AutoencoderSettings()
    generate: GenerateSettings = GenerateSettings()
    targets: TargetsSettings = TargetsSettings()
    cache: CacheSettings = CacheSettings()
    executor: ExecutorSettings = ExecutorSettings()
    path: Path = Field(exclude=True)

    @property
    def out(self) -> Path:
        return artifacts_root() / self.name


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
