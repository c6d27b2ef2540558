"""SAOS diffusion transformer (stable-audio-tools DiffusionTransformer + ContinuousTransformer),
re-authored for export: constant rotary table, no autocast, no checkpointing, no CFG branch,
global conditioning as an explicit input. Parameter names are the checkpoint's (model.model.*)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.model_config import DiTConfig

from . import layout, shards
from .layout import rotary_dim


class LayerNorm(nn.Module):
    """stable-audio-tools LayerNorm: learned gamma, beta a (checkpointed) buffer."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta, self.eps)


class RotaryEmbedding(nn.Module):
    """Keeps the checkpoint's inv_freq; serves cos/sin tables for one fixed sequence length,
    rebuilt whenever inv_freq is loaded, so no arange/cos/sin of positions reaches the graph."""

    def __init__(self, dim: int, seq_len: int):
        super().__init__()
        self.seq_len = seq_len
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)))
        self.register_buffer("cos", torch.empty(seq_len, dim), persistent=False)
        self.register_buffer("sin", torch.empty(seq_len, dim), persistent=False)
        self._tables()

    def _tables(self):
        if self.inv_freq.is_meta:
            return
        freqs = torch.outer(torch.arange(self.seq_len, dtype=torch.float32), self.inv_freq.float())
        freqs = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = freqs.cos(), freqs.sin()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._tables()


def apply_rotary(t, cos, sin):
    """NeoX rotary on the first `rot` dims of the head; the rest pass through."""
    rot = cos.shape[-1]
    t_rot, t_pass = t[..., :rot], t[..., rot:]
    x1, x2 = t_rot[..., : rot // 2], t_rot[..., rot // 2:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((t_rot * cos + rotated * sin, t_pass), dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, heads, cross: bool):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        if cross:
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        else:
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6)

    def _split(self, t):
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, context=None, cos=None, sin=None):
        if context is None:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        else:
            q = self.to_q(x)
            k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        q, k = self.q_norm(q), self.k_norm(k)
        if cos is not None:
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v)  # no mask: the original drops it
        b, h, n, d = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * d))


class GLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.silu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        self.ff = nn.Sequential(GLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim), nn.Identity())

    def forward(self, x):
        return self.ff(x)


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.pre_norm = LayerNorm(dim)
        self.self_attn = Attention(dim, heads, cross=False)
        self.cross_attend_norm = LayerNorm(dim)
        self.cross_attn = Attention(dim, heads, cross=True)
        self.ff_norm = LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context, cos, sin):
        x = x + self.self_attn(self.pre_norm(x), cos=cos, sin=sin)
        x = x + self.cross_attn(self.cross_attend_norm(x), context=context)
        return x + self.ff(self.ff_norm(x))


class ContinuousTransformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_io, seq_len):
        super().__init__()
        self.project_in = nn.Linear(dim_io, dim, bias=False)
        self.project_out = nn.Linear(dim, dim_io, bias=False)
        self.rotary_pos_emb = RotaryEmbedding(rotary_dim(dim // heads), seq_len)
        self.layers = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(depth))

    def forward(self, x, prepend, context):
        x = torch.cat((prepend, self.project_in(x)), dim=1)
        cos, sin = self.rotary_pos_emb.cos, self.rotary_pos_emb.sin
        for layer in self.layers:
            x = layer(x, context, cos, sin)
        return self.project_out(x)


class FourierFeatures(nn.Module):
    def __init__(self, out_features=256):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features // 2, 1))

    def forward(self, t):
        f = 2 * math.pi * t @ self.weight.T
        return torch.cat((f.cos(), f.sin()), dim=-1)


def _mlp(d_in, d, bias):
    return nn.Sequential(nn.Linear(d_in, d, bias=bias), nn.SiLU(), nn.Linear(d, d, bias=bias))


class DiT(nn.Module):
    """forward(x [B,C,T], t [B], cross_attn_cond [B,L+1,D], global_cond [B,D]) → velocity [B,C,T]."""

    def __init__(self, cfg: DiTConfig, latent_frames: int):
        super().__init__()
        e = cfg.embed_dim
        self.timestep_features = FourierFeatures(256)
        self.to_timestep_embed = _mlp(256, e, bias=True)
        self.to_cond_embed = _mlp(cfg.cond_token_dim, e, bias=False)
        self.to_global_embed = _mlp(cfg.global_cond_dim, e, bias=False)
        self.transformer = ContinuousTransformer(e, cfg.depth, cfg.num_heads, cfg.io_channels,
                                                 seq_len=latent_frames + 1)
        self.preprocess_conv = nn.Conv1d(cfg.io_channels, cfg.io_channels, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(cfg.io_channels, cfg.io_channels, 1, bias=False)

    def forward(self, x, t, cross_attn_cond, global_cond):
        context = self.to_cond_embed(cross_attn_cond)
        g = self.to_global_embed(global_cond) + self.to_timestep_embed(self.timestep_features(t[:, None]))
        x = self.preprocess_conv(x) + x
        out = self.transformer(x.transpose(1, 2), g.unsqueeze(1), context)
        out = out.transpose(1, 2)[:, :, 1:]  # drop the prepended global token
        return self.postprocess_conv(out) + out


def from_shard(shard_path):
    """The DiT loaded from its shard, and example inputs of its fixed shapes."""
    tensors, config = shards.read(shard_path)
    cfg = DiTConfig.model_validate(config["dit"])
    model = DiT(cfg, config["latent_frames"]).eval()
    shards.load_strict(model, tensors, layout.dit(cfg), shard_path)
    g = torch.Generator().manual_seed(0)
    example = {"x": torch.randn(1, cfg.io_channels, config["latent_frames"], generator=g),
               "t": torch.tensor([0.5]),
               "cross_attn_cond": torch.randn(1, config["cond_tokens"], cfg.cond_token_dim, generator=g),
               "global_cond": torch.randn(1, cfg.global_cond_dim, generator=g)}
    return model, example
