"""Pydantic schemas of the parts of SAOS model_config.json the build reads, and the checkpoint
file names: what the stages that build or re-author the model import (so a change to the build
profile's schema in config.py is no part of any model stage's key)."""
import json
import math
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InputError, pydantic_error

CHECKPOINT_FILES = ("model.safetensors", "model.ckpt")  # in order of preference


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class OobleckConfig(_Loose):
    channels: int = Field(gt=0)
    c_mults: list[int]
    strides: list[int]
    latent_dim: int = Field(gt=0)
    use_snake: Literal[True]  # the ELU variant is not SAOS
    antialias_activation: Literal[False] = False
    use_nearest_upsample: Literal[False] = False

    @model_validator(mode="after")
    def _lengths(self):
        if len(self.c_mults) != len(self.strides):
            raise ValueError("c_mults and strides must have the same length")
        return self


class OobleckDecoderConfig(OobleckConfig):
    out_channels: int = 2
    final_tanh: bool = True  # the library default; SAOS sets false


class OobleckEncoderConfig(OobleckConfig):
    in_channels: int = 2


class DecoderPart(_Loose):
    type: Literal["oobleck"]
    config: OobleckDecoderConfig


class EncoderPart(_Loose):
    type: Literal["oobleck"]
    config: OobleckEncoderConfig


class AutoencoderConfig(_Loose):
    encoder: EncoderPart | None = None
    decoder: DecoderPart
    latent_dim: int
    downsampling_ratio: int
    io_channels: int


class PretransformConfig(_Loose):
    type: Literal["autoencoder"]
    config: AutoencoderConfig
    scale: float = 1.0


class T5Params(_Loose):
    t5_model_name: str
    max_length: int = Field(128, gt=0)


class T5Entry(_Loose):
    id: str
    type: Literal["t5"]
    config: T5Params


class NumberParams(_Loose):
    min_val: float = 0.0
    max_val: float = 1.0


class NumberEntry(_Loose):
    id: str
    type: Literal["number"]
    config: NumberParams


class ConditioningConfig(_Loose):
    configs: list[Annotated[Union[T5Entry, NumberEntry], Field(discriminator="type")]]
    cond_dim: int = Field(gt=0)

    @property
    def t5(self) -> T5Entry:
        return next(c for c in self.configs if c.type == "t5")

    @property
    def number(self) -> NumberEntry:
        return next(c for c in self.configs if c.type == "number")

    @model_validator(mode="after")
    def _one_each(self):
        for kind in ("t5", "number"):
            if sum(c.type == kind for c in self.configs) != 1:
                raise ValueError(f"exactly one conditioner of type '{kind}' is supported")
        return self


class AttnKwargs(_Loose):
    qk_norm: Literal["ln"]


class DiTConfig(_Loose):
    io_channels: int = Field(gt=0)
    embed_dim: int = Field(gt=0)
    depth: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    cond_token_dim: int = Field(gt=0)
    global_cond_dim: int = Field(gt=0)
    transformer_type: Literal["continuous_transformer"]
    attn_kwargs: AttnKwargs
    patch_size: Literal[1] = 1
    global_cond_type: Literal["prepend"] = "prepend"
    timestep_cond_type: Literal["global"] = "global"

    @model_validator(mode="after")
    def _heads(self):
        if self.embed_dim % self.num_heads:
            raise ValueError("embed_dim must be a multiple of num_heads")
        if self.embed_dim // self.num_heads < 32:
            raise ValueError("head dim (embed_dim/num_heads) must be >= 32 (rotary width rule)")
        return self


class DiffusionConfig(_Loose):
    cross_attention_cond_ids: list[str]
    global_cond_ids: list[str]
    diffusion_objective: Literal["rf_denoiser", "rectified_flow"]
    type: Literal["dit"]
    config: DiTConfig


class ModelSection(_Loose):
    pretransform: PretransformConfig
    conditioning: ConditioningConfig
    diffusion: DiffusionConfig
    io_channels: int


class ModelConfig(_Loose):
    model_type: Literal["diffusion_cond"]
    sample_size: int = Field(gt=0)
    sample_rate: int = Field(gt=0)
    audio_channels: int = 2
    model: ModelSection

    @model_validator(mode="after")
    def _consistent(self):
        m = self.model
        ae = m.pretransform.config
        if math.prod(ae.decoder.config.strides) != ae.downsampling_ratio:
            raise ValueError("model.pretransform.config: product of decoder strides != downsampling_ratio")
        if self.sample_size % ae.downsampling_ratio:
            raise ValueError("sample_size must be a multiple of downsampling_ratio")
        dit = m.diffusion.config
        if dit.io_channels != ae.decoder.config.latent_dim:
            raise ValueError("model.diffusion.config.io_channels != decoder latent_dim")
        cond = m.conditioning
        if [m.diffusion.cross_attention_cond_ids, m.diffusion.global_cond_ids] != [
            [cond.t5.id, cond.number.id], [cond.number.id]]:
            raise ValueError("model.diffusion: only cross ids [t5, number] and global ids [number] "
                             "(the SAOS layout) are supported")
        if dit.cond_token_dim != cond.cond_dim or dit.global_cond_dim != cond.cond_dim:
            raise ValueError("model.diffusion.config: cond_token_dim/global_cond_dim != conditioning.cond_dim")
        return self

    @property
    def latent_frames(self) -> int:
        return self.sample_size // self.model.pretransform.config.downsampling_ratio

    @property
    def dit(self) -> DiTConfig:
        return self.model.diffusion.config

    @property
    def decoder(self) -> OobleckDecoderConfig:
        return self.model.pretransform.config.decoder.config

    @property
    def conditioning(self) -> ConditioningConfig:
        return self.model.conditioning


def read_text(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found")
    return path.read_text()


def load_model_config(path) -> ModelConfig:
    path = Path(path)
    try:
        raw = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(path, f"line {e.lineno} col {e.colno}", f"malformed JSON: {e.msg}") from None
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as e:
        raise pydantic_error(path, e) from None
