"""Oobleck decoder (stable-audio-tools OobleckDecoder, use_snake=True), re-authored for export.

Loads the checkpoint's keys (weight_g/weight_v, Snake alpha/beta in log space) and folds them at
load time: convs hold plain weights (g·v/‖v‖), Snake holds exp(alpha) and 1/(exp(beta)+1e-9)."""
import math

import torch
from torch import nn

from pipeline.config import OobleckDecoderConfig


def _take(module, state_dict, prefix, names, missing_keys):
    found = {}
    for n in names:
        if prefix + n in state_dict:
            found[n] = state_dict[prefix + n]
        else:
            missing_keys.append(prefix + n)
    return found if len(found) == len(names) else None


class SnakeBeta(nn.Module):
    """y = x + inv_beta · sin(scale · x)²  with scale = exp(alpha), inv_beta = 1/(exp(beta)+1e-9)."""

    def __init__(self, channels):
        super().__init__()
        self.register_buffer("scale", torch.ones(1, channels, 1), persistent=False)
        self.register_buffer("inv_beta", torch.ones(1, channels, 1), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        p = _take(self, state_dict, prefix, ("alpha", "beta"), missing_keys)
        if p is None:
            return
        with torch.no_grad():
            self.scale.copy_(torch.exp(p["alpha"]).view_as(self.scale))
            self.inv_beta.copy_((1.0 / (torch.exp(p["beta"]) + 1e-9)).view_as(self.inv_beta))

    def forward(self, x):
        return x + self.inv_beta * torch.sin(x * self.scale) ** 2


class _WeightNormFolded:
    """Mixin for conv layers: load weight_g/weight_v (+bias) and store the folded weight."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        names = ("weight_g", "weight_v") + (("bias",) if self.bias is not None else ())
        p = _take(self, state_dict, prefix, names, missing_keys)
        if p is None:
            return
        folded = {prefix + "weight": torch._weight_norm(p["weight_v"], p["weight_g"], 0)}
        if self.bias is not None:
            folded[prefix + "bias"] = p["bias"]
        super()._load_from_state_dict(folded, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


class WNConv1d(_WeightNormFolded, nn.Conv1d):
    pass


class WNConvTranspose1d(_WeightNormFolded, nn.ConvTranspose1d):
    pass


class ResidualUnit(nn.Module):
    def __init__(self, ch, dilation):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(ch), WNConv1d(ch, ch, 7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(ch), WNConv1d(ch, ch, 1))

    def forward(self, x):
        return x + self.layers(x)


class DecoderBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(cin),
            WNConvTranspose1d(cin, cout, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            ResidualUnit(cout, 1), ResidualUnit(cout, 3), ResidualUnit(cout, 9))

    def forward(self, x):
        return self.layers(x)


class Decoder(nn.Module):
    """forward(latent [B,C,T]) → audio [B, out_channels, T·∏strides]."""

    def __init__(self, cfg: OobleckDecoderConfig, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        ch = [m * cfg.channels for m in [1, *cfg.c_mults]]
        n = len(cfg.c_mults)
        layers = [WNConv1d(cfg.latent_dim, ch[-1], 7, padding=3)]
        layers += [DecoderBlock(ch[i], ch[i - 1], cfg.strides[i - 1]) for i in range(n, 0, -1)]
        layers += [SnakeBeta(ch[0]), WNConv1d(ch[0], cfg.out_channels, 7, padding=3, bias=False),
                   nn.Tanh() if cfg.final_tanh else nn.Identity()]
        self.layers = nn.Sequential(*layers)

    def forward(self, latent):
        if self.scale != 1.0:
            latent = latent * self.scale
        return self.layers(latent)
