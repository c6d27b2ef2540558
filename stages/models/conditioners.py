"""SAOS conditioners: T5 encoder (prompt) + NumberConditioner (seconds_total), re-authored with
tensor inputs so both trace into one graph. The number embedder's parameters keep the checkpoint
names relative to conditioner.conditioners.*; T5 comes from the local T5 folder in fp32."""
import math
from pathlib import Path

import torch
from torch import nn

from pipeline.core.model_config import ConditioningConfig

from . import layout, shards
from .layout import NUMBER_EMBED_DIM


class LearnedPositionalEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, x):  # x [B] → [B, 1 + dim], order (value, sin, cos)
        x = x[:, None]
        freqs = x * self.weights[None, :] * 2 * math.pi
        return torch.cat((x, freqs.sin(), freqs.cos()), dim=-1)


class NumberEmbedder(nn.Module):
    def __init__(self, features, dim=NUMBER_EMBED_DIM):
        super().__init__()
        self.embedding = nn.Sequential(LearnedPositionalEmbedding(dim), nn.Linear(dim + 1, features))

    def forward(self, x):
        return self.embedding(x)


class NumberConditioner(nn.Module):
    """seconds [B] → [B, 1, D]: clamp to [min, max], normalise to [0, 1], embed."""

    def __init__(self, output_dim, min_val, max_val):
        super().__init__()
        self.min_val, self.max_val = float(min_val), float(max_val)
        self.embedder = NumberEmbedder(output_dim)

    def forward(self, x):
        x = (x.clamp(self.min_val, self.max_val) - self.min_val) / (self.max_val - self.min_val)
        return self.embedder(x).unsqueeze(1)


def load_t5(t5_dir: Path, cond_dim: int):
    from transformers import T5Config, T5EncoderModel
    conf_path = Path(t5_dir) / "config.json"
    conf = T5Config.from_pretrained(t5_dir, local_files_only=True)
    layout.check_t5_width(conf_path, conf.d_model, cond_dim)
    model = T5EncoderModel.from_pretrained(t5_dir, local_files_only=True, dtype=torch.float32)
    return model.eval()


class Conditioners(nn.Module):
    """forward(input_ids [1,L] int64, attention_mask [1,L] int64, seconds_total [1] f32) →
    cross_attention_input [1,L+1,D], cross_attention_mask [1,L+1] f32, global_cond [1,D]."""

    def __init__(self, config: dict, t5):
        super().__init__()
        number = config["number"]
        self.number_id = number["id"]
        self.t5 = t5
        self.conditioners = nn.ModuleDict({self.number_id: NumberConditioner(
            config["cond_dim"], number["config"]["min_val"], number["config"]["max_val"])})

    def forward(self, input_ids, attention_mask, seconds_total):
        emb = self.t5(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.to(emb.dtype)
        emb = emb * mask.unsqueeze(-1)  # padded rows exactly 0, as the original
        seconds = self.conditioners[self.number_id](seconds_total)
        cross = torch.cat((emb, seconds), dim=1)
        cross_mask = torch.cat((mask, torch.ones_like(mask[:, :1])), dim=1)
        return cross, cross_mask, seconds.squeeze(1)


def from_shard(shard_path, t5_config_path):
    """The conditioners (T5 from its folder, the seconds embedder from the shard) and example
    inputs of the exported shapes."""
    tensors, config = shards.read(shard_path)
    cond = ConditioningConfig.model_validate({"configs": [config["t5"], config["number"]],
                                              "cond_dim": config["cond_dim"]})
    model = Conditioners(config, load_t5(t5_config_path.parent, cond.cond_dim)).eval()
    shards.load_strict(model.conditioners, tensors, layout.conditioners(cond), shard_path)
    length = cond.t5.config.max_length
    example = (torch.ones(1, length, dtype=torch.int64), torch.ones(1, length, dtype=torch.int64),
               torch.tensor([10.0]))
    return model, example
