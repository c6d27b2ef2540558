"""Oobleck decoder (stable-audio-tools OobleckDecoder, use_snake=True), re-authored for export.

Loads the checkpoint's keys (weight_g/weight_v, Snake alpha/beta in log space) and folds them at
load time: convs hold plain weights (g·v/‖v‖), Snake holds exp(alpha) and 1/(exp(beta)+1e-9).

Every layer also runs on [B, C, 1, T] activations (`ExportDecoder`): 2-D convs with a 1×k kernel
let litert-torch's layout pass keep the whole graph channels-last (a 1-D conv gets an NCW↔NHWC
transpose pair of its activation on either side), and a transposed conv runs in polyphase form,
an ordinary conv to stride × C_out channels followed by an interleave, so every conv of the
graph is a CONV_2D that the int8 recipes quantize."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.model_config import OobleckDecoderConfig

from . import layout, shards


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
        shape = (1, -1) + (1,) * (x.dim() - 2)  # [1, C, 1] or [1, C, 1, 1]
        return x + self.inv_beta.view(shape) * torch.sin(x * self.scale.view(shape)) ** 2


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
    def prepare_export(self):
        """The [C_out, C_in, 1, k] weight as a buffer (see ExportDecoder)."""
        self.register_buffer("weight_2d", self.weight.detach()[:, :, None].clone(), persistent=False)

    def forward(self, x):
        if x.dim() == 3:
            return super().forward(x)
        return F.conv2d(x, self.weight_2d, self.bias, padding=(0, self.padding[0]),
                        dilation=(1, self.dilation[0]))


# ai-edge-quantizer 0.10 mis-broadcasts the per-channel scales of a conv weight over 32 MiB
# ("input operand has more dimensions than allowed by the axis remapping").
_QUANTIZER_MAX_WEIGHT = 32 << 20


class WNConvTranspose1d(_WeightNormFolded, nn.ConvTranspose1d):
    """Kernel 2·stride. Output sample m·s + p (phase p) = W[:, :, p]ᵀ x[m] + W[:, :, p + s]ᵀ x[m − 1]:
    a 2-tap conv to s·C_out channels (phase-major) over x zero-padded by one on each side gives
    all L + 1 frames of every phase; interleaving them and cropping `padding` samples from each
    end is exactly ConvTranspose1d."""

    def prepare_export(self):
        """The polyphase weights as buffers (see ExportDecoder); a weight over the quantizer's
        limit is split into several convs of whole phases, concatenated in forward."""
        s, (cin, cout, _) = self.stride[0], self.weight.shape
        with torch.no_grad():
            taps = torch.stack([self.weight[:, :, s:], self.weight[:, :, :s]], -1)  # [cin, cout, s, 2]
            w = taps.permute(2, 1, 0, 3).reshape(s * cout, cin, 1, 2)
            b = torch.cat([self.bias] * s) if self.bias is not None else w.new_zeros(s * cout)
        per_conv = max(1, _QUANTIZER_MAX_WEIGHT // (cout * cin * 2 * 4))  # float32 bytes of one phase
        self.phase_convs = len(range(0, s, per_conv))
        for j, i in enumerate(range(0, s, per_conv)):
            rows = slice(i * cout, (i + per_conv) * cout)
            self.register_buffer(f"phase_weight{j}", w[rows].clone(), persistent=False)
            self.register_buffer(f"phase_bias{j}", b[rows].clone(), persistent=False)

    def forward(self, x):
        if x.dim() == 3:
            return super().forward(x)
        s, (pad,), cout = self.stride[0], self.padding, self.weight.shape[1]
        x = F.pad(x, (1, 1))
        z = torch.cat([F.conv2d(x, getattr(self, f"phase_weight{j}"), getattr(self, f"phase_bias{j}"))
                       for j in range(self.phase_convs)], 1)  # [B, s·cout, 1, L + 1]
        n, _, _, frames = z.shape
        # Channels-last, the interleave is a reshape; written so, the layout pass's transposes
        # around it cancel against these two permutes.
        y = z.permute(0, 2, 3, 1).reshape(n, 1, frames * s, cout).permute(0, 3, 1, 2)
        return y[..., pad:frames * s - pad]


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


class ExportDecoder(nn.Module):
    """The decoder on [B, C, 1, T] activations (see the module docstring); same inputs and
    outputs as `Decoder`, which it wraps. Its conv weights in that form are computed here, once,
    from the loaded weights: the exported graph holds them as constants rather than as ops on the
    checkpoint's weights, which the converter would fold (slowly: minutes at real size)."""

    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder
        for m in decoder.modules():
            if isinstance(m, (WNConv1d, WNConvTranspose1d)):
                m.prepare_export()

    def forward(self, latent):
        if self.decoder.scale != 1.0:
            latent = latent * self.decoder.scale
        return self.decoder.layers(latent[:, :, None])[:, :, 0]


def from_shard(shard_path):
    """The faithful decoder (weight norm folded) loaded from its shard, and an example latent."""
    tensors, config = shards.read(shard_path)
    cfg = OobleckDecoderConfig.model_validate(config["decoder"])
    model = Decoder(cfg, config["scale"]).eval()
    shards.load_strict(model, tensors, layout.decoder(cfg), shard_path)
    g = torch.Generator().manual_seed(0)
    return model, {"latent": torch.randn(1, cfg.latent_dim, config["latent_frames"], generator=g)}
