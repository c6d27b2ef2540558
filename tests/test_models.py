"""Re-authored modules vs the original stable-audio-tools 0.0.19 on the same random weights."""
import json
import math

import numpy as np
import pytest
import torch

from pipeline.core.model_config import ModelConfig
from runtime import ping_pong
from sat_reference import sat
from stages import synth
from stages.models import layout
from stages.models.conditioners import NumberConditioner
from stages.models import decoder as decoder_module
from stages.models.decoder import Decoder, ExportDecoder
from stages.models.dit import DiT

torch.manual_seed(0)
REF = sat()


def _other_config() -> ModelConfig:
    """Different dims from the tiny preset: 3 heads of 64, depth 3, other strides and ladder."""
    raw = synth.model_config("tiny")
    raw["sample_size"] = 8 * 2048
    m = raw["model"]
    m["conditioning"]["cond_dim"] = 48
    m["diffusion"]["config"].update(io_channels=8, embed_dim=192, depth=3, num_heads=3,
                                    cond_token_dim=48, global_cond_dim=48)
    m["io_channels"] = 8
    ae = m["pretransform"]["config"]
    ae["latent_dim"] = 8
    ae["decoder"]["config"].update(channels=4, c_mults=[1, 2, 3, 4, 6], strides=[4, 2, 8, 4, 8], latent_dim=8)
    ae["encoder"]["config"].update(channels=4, c_mults=[1, 2, 3, 4, 6], strides=[4, 2, 8, 4, 8], latent_dim=16)
    return ModelConfig.model_validate(raw)


CONFIGS = {"tiny": ModelConfig.model_validate(synth.model_config("tiny")), "other": _other_config()}


def _weights(keys: dict, seed=0) -> dict:
    g = np.random.default_rng(seed)
    return {k: torch.from_numpy(synth._init(k, s, g)) for k, s in keys.items()}


def _max_abs(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", CONFIGS)
def test_dit_matches_original(name):
    cfg = CONFIGS[name]
    c, T, L = cfg.dit, cfg.latent_frames, cfg.conditioning.t5.config.max_length + 1
    ref = REF.dit.DiffusionTransformer(
        io_channels=c.io_channels, embed_dim=c.embed_dim, depth=c.depth, num_heads=c.num_heads,
        cond_token_dim=c.cond_token_dim, global_cond_dim=c.global_cond_dim,
        transformer_type="continuous_transformer", attn_kwargs={"qk_norm": "ln"},
        diffusion_objective="rf_denoiser").eval()
    sd = _weights(layout.dit(cfg.dit))
    assert set(ref.state_dict()) == set(sd)
    ref.load_state_dict(sd, strict=True)
    ours = DiT(c, T).eval()
    ours.load_state_dict(sd, strict=True)
    for t in (1.0, 0.5, 0.0269):
        x, cross, g = torch.randn(1, c.io_channels, T), torch.randn(1, L, c.cond_token_dim), torch.randn(1, c.global_cond_dim)
        tt = torch.tensor([t])
        with torch.no_grad():
            want = ref(x, tt, cross_attn_cond=cross, global_embed=g, cfg_scale=1.0)
            got = ours(x, tt, cross, g)
        assert want.abs().max() > 0.1
        assert _max_abs(got, want) <= 1e-5


def test_dit_uses_global_cond():
    cfg = CONFIGS["tiny"]
    ours = DiT(cfg.dit, cfg.latent_frames).eval()
    ours.load_state_dict(_weights(layout.dit(cfg.dit)), strict=True)
    d = cfg.dit.global_cond_dim
    x, cross = torch.randn(1, cfg.dit.io_channels, cfg.latent_frames), torch.randn(1, 65, d)
    with torch.no_grad():
        a = ours(x, torch.tensor([0.5]), cross, torch.zeros(1, d))
        b = ours(x, torch.tensor([0.5]), cross, torch.ones(1, d))
    assert _max_abs(a, b) > 1e-2


@pytest.mark.parametrize("name", CONFIGS)
def test_decoder_matches_original(name):
    cfg = CONFIGS[name]
    d = cfg.decoder
    ref = REF.autoencoders.OobleckDecoder(out_channels=d.out_channels, channels=d.channels, c_mults=d.c_mults,
                                          strides=d.strides, latent_dim=d.latent_dim, use_snake=True,
                                          final_tanh=d.final_tanh).eval()
    sd = _weights(layout.decoder(cfg.decoder), seed=3)
    assert set(ref.state_dict()) == set(sd)
    ref.load_state_dict(sd, strict=True)
    ours = Decoder(d).eval()
    ours.load_state_dict(sd, strict=True)
    z = torch.randn(1, d.latent_dim, cfg.latent_frames)
    with torch.no_grad():
        want, got, exported = ref(z), ours(z), ExportDecoder(ours)(z)
    assert got.shape == exported.shape == (1, 2, cfg.latent_frames * math.prod(d.strides))
    scale = want.abs().max().item()
    assert scale > 1e-2
    assert _max_abs(got, want) <= 1e-5 * max(1.0, scale)
    assert _max_abs(exported, want) <= 1e-5 * max(1.0, scale)


@pytest.mark.parametrize("strides", [[3, 5, 2], [7, 1, 4]])
def test_export_decoder_polyphase_matches_original(strides, monkeypatch):
    """The channels-last, polyphase decoder that is exported equals the original decoder with odd
    strides too (odd padding), and when its large transposed-conv weights are split into several
    convs (limit lowered so that the tiny weights split)."""
    monkeypatch.setattr(decoder_module, "_QUANTIZER_MAX_WEIGHT", 400)
    d = CONFIGS["tiny"].decoder.model_copy(update=dict(channels=6, c_mults=[1, 2, 3], strides=strides, latent_dim=5))
    ref = REF.autoencoders.OobleckDecoder(out_channels=2, channels=6, c_mults=d.c_mults, strides=strides,
                                          latent_dim=5, use_snake=True, final_tanh=False).eval().double()
    ref.load_state_dict(_weights(layout.decoder(d), seed=4), strict=True)
    dec = Decoder(d).double().eval()
    dec.load_state_dict(ref.state_dict(), strict=True)
    ours = ExportDecoder(dec)  # takes its export weights from the loaded decoder
    z = torch.randn(1, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        want, got = ref(z), ours(z)
    assert got.shape == want.shape  # odd strides crop unevenly: not 7·∏strides
    assert want.abs().max() > 1e-2 and _max_abs(got, want) <= 1e-10


def test_number_conditioner_matches_original():
    ref = REF.conditioners.NumberConditioner(768, 0, 256).eval()
    sd = _weights({k: tuple(v.shape) for k, v in ref.state_dict().items()}, seed=5)
    ref.load_state_dict(sd, strict=True)
    ours = NumberConditioner(768, 0, 256).eval()
    ours.load_state_dict(sd, strict=True)
    secs = [0.0, 10.0, 47.5, 256.0, 300.0, -4.0]
    with torch.no_grad():
        want = torch.cat([ref([s], device="cpu")[0] for s in secs])
        got = torch.cat([ours(torch.tensor([s])) for s in secs])
    assert want.abs().max() > 0.1
    assert _max_abs(got, want) <= 1e-5


def test_schedule_values():
    want = [1, .993307, .982014, .952574, .880797, .731059, .5, .268941, 0]
    np.testing.assert_allclose(ping_pong.schedule(8), want, atol=1e-6)


def test_ping_pong_matches_original_given_same_noise(monkeypatch):
    steps, shape = 8, (1, 4, 6)
    noise = [torch.from_numpy(n) for n in ping_pong.noises(7, shape, steps)]
    w = torch.randn(4, 4)

    def velocity(x, t):  # a smooth, t-dependent stand-in for the DiT
        tt = t if torch.is_tensor(t) else torch.tensor([t])
        return torch.tanh(torch.einsum("oc,bct->bot", w, x)) * (1 + tt.view(-1, 1, 1))

    draws = iter(noise[1:])
    monkeypatch.setattr(torch, "randn_like", lambda x: next(draws))
    logsnr = torch.linspace(-6, 2, steps + 1)
    t = torch.sigmoid(-logsnr)
    t[0], t[-1] = 1, 0
    want = REF.sampling.sample_flow_pingpong(velocity, noise[0].clone(), sigmas=t)
    got = ping_pong.sample(velocity, noise, steps)
    assert _max_abs(got, want) <= 1e-5


def test_real_layout_loads_strictly():
    """The real 750-key layout with the real config: no missing or unexpected key."""
    from pipeline.core.config import REPO
    from pipeline.core.model_config import load_model_config
    cfg = load_model_config(REPO / "stages" / "data" / "sao_small_model_config.json")
    tsv = REPO.parent / "shared" / "reference" / "sao_small_state_dict_keys.tsv"
    if tsv.exists():
        ref = {l.split("\t")[0]: tuple(json.loads(l.split("\t")[1].replace("(", "[").replace(",)", "]").replace(")", "]")))
               for l in tsv.read_text().splitlines()}
        assert layout.checkpoint_layout(cfg) == ref
    with torch.device("meta"):
        for module, keys in ((DiT(cfg.dit, cfg.latent_frames), layout.dit(cfg.dit)),
                             (Decoder(cfg.decoder), layout.decoder(cfg.decoder))):
            module.load_state_dict({k: torch.empty(s, device="meta") for k, s in keys.items()}, strict=True)
