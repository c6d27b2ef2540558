"""The SAOS checkpoint layout (key → shape) derived from a model config, per submodule.

Key names are the original stable-audio-tools ones; the re-authored modules use the same names
relative to each submodule's prefix, so a shard loads without any remapping table."""
from pipeline.core.model_config import ConditioningConfig, DiTConfig, ModelConfig, OobleckConfig, OobleckDecoderConfig
from pipeline.core.errors import InputError

PREFIXES = {
    "conditioners": "conditioner.conditioners.",
    "dit": "model.model.",
    "decoder": "pretransform.model.decoder.",
    "encoder": "pretransform.model.encoder.",  # audio-to-audio only: validated, not converted
}
MAX_LISTED = 10
NUMBER_EMBED_DIM = 256  # NumberEmbedder default: 128 learned frequencies


def conditioners(cond: ConditioningConfig) -> dict:
    nid, d = cond.number.id, cond.cond_dim
    e = f"{nid}.embedder.embedding"
    return {f"{e}.0.weights": (NUMBER_EMBED_DIM // 2,), f"{e}.1.weight": (d, NUMBER_EMBED_DIM + 1),
            f"{e}.1.bias": (d,)}


def rotary_dim(head_dim: int) -> int:
    return max(head_dim // 2, 32)


def dit(c: DiTConfig) -> dict:
    e, io, hd = c.embed_dim, c.io_channels, c.embed_dim // c.num_heads
    keys = {
        "timestep_features.weight": (128, 1),
        "to_timestep_embed.0.weight": (e, 256), "to_timestep_embed.0.bias": (e,),
        "to_timestep_embed.2.weight": (e, e), "to_timestep_embed.2.bias": (e,),
        "to_cond_embed.0.weight": (e, c.cond_token_dim), "to_cond_embed.2.weight": (e, e),
        "to_global_embed.0.weight": (e, c.global_cond_dim), "to_global_embed.2.weight": (e, e),
    }
    for i in range(c.depth):
        b = f"transformer.layers.{i}"
        for norm in ("pre_norm", "cross_attend_norm", "ff_norm"):
            keys |= {f"{b}.{norm}.gamma": (e,), f"{b}.{norm}.beta": (e,)}
        keys |= {f"{b}.self_attn.to_qkv.weight": (3 * e, e), f"{b}.self_attn.to_out.weight": (e, e),
                 f"{b}.cross_attn.to_q.weight": (e, e), f"{b}.cross_attn.to_kv.weight": (2 * e, e),
                 f"{b}.cross_attn.to_out.weight": (e, e)}
        for attn in ("self_attn", "cross_attn"):
            for n in ("q_norm", "k_norm"):
                keys |= {f"{b}.{attn}.{n}.weight": (hd,), f"{b}.{attn}.{n}.bias": (hd,)}
        keys |= {f"{b}.ff.ff.0.proj.weight": (8 * e, e), f"{b}.ff.ff.0.proj.bias": (8 * e,),
                 f"{b}.ff.ff.2.weight": (e, 4 * e), f"{b}.ff.ff.2.bias": (e,)}
    keys |= {"transformer.project_in.weight": (e, io), "transformer.project_out.weight": (io, e),
             "transformer.rotary_pos_emb.inv_freq": (rotary_dim(hd) // 2,),
             "preprocess_conv.weight": (io, io, 1), "postprocess_conv.weight": (io, io, 1)}
    return keys


def _snake(p, ch):
    return {f"{p}.alpha": (ch,), f"{p}.beta": (ch,)}


def _wnconv(p, out_ch, in_ch, k, bias=True, transposed=False):
    g0 = in_ch if transposed else out_ch  # weight norm runs over dim 0 of the weight
    v = (in_ch, out_ch, k) if transposed else (out_ch, in_ch, k)
    return ({f"{p}.bias": (out_ch,)} if bias else {}) | {f"{p}.weight_g": (g0, 1, 1), f"{p}.weight_v": v}


def _residual_unit(p, ch):
    return (_snake(f"{p}.layers.0", ch) | _wnconv(f"{p}.layers.1", ch, ch, 7)
            | _snake(f"{p}.layers.2", ch) | _wnconv(f"{p}.layers.3", ch, ch, 1))


def _ladder(c: OobleckConfig):
    return [m * c.channels for m in [1, *c.c_mults]]


def decoder(c: OobleckDecoderConfig) -> dict:
    ch, n = _ladder(c), len(c.c_mults)
    keys = _wnconv("layers.0", ch[-1], c.latent_dim, 7)
    for j, i in enumerate(range(n, 0, -1), start=1):
        cin, cout, s = ch[i], ch[i - 1], c.strides[i - 1]
        keys |= _snake(f"layers.{j}.layers.0", cin)
        keys |= _wnconv(f"layers.{j}.layers.1", cout, cin, 2 * s, transposed=True)
        for r in (2, 3, 4):
            keys |= _residual_unit(f"layers.{j}.layers.{r}", cout)
    keys |= _snake(f"layers.{n + 1}", ch[0])
    keys |= _wnconv(f"layers.{n + 2}", c.out_channels, ch[0], 7, bias=False)
    return keys


def encoder(c) -> dict:
    if c is None:
        return {}
    ch, n = _ladder(c), len(c.c_mults)
    keys = _wnconv("layers.0", ch[0], c.in_channels, 7)
    for i in range(n):
        for r in (0, 1, 2):
            keys |= _residual_unit(f"layers.{i + 1}.layers.{r}", ch[i])
        keys |= _snake(f"layers.{i + 1}.layers.3", ch[i])
        keys |= _wnconv(f"layers.{i + 1}.layers.4", ch[i + 1], ch[i], 2 * c.strides[i])
    keys |= _snake(f"layers.{n + 1}", ch[-1])
    keys |= _wnconv(f"layers.{n + 2}", c.latent_dim, ch[-1], 3)
    return keys


def shard_config(cfg: ModelConfig, name: str) -> dict:
    """The part of the model config one submodule needs (stored in its shard's metadata)."""
    cond = cfg.conditioning
    if name == "conditioners":
        return {"t5": cond.t5.model_dump(mode="json"), "number": cond.number.model_dump(mode="json"),
                "cond_dim": cond.cond_dim}
    if name == "dit":
        return {"dit": cfg.dit.model_dump(mode="json"), "latent_frames": cfg.latent_frames,
                "cond_tokens": cond.t5.config.max_length + 1}
    if name == "decoder":
        return {"decoder": cfg.decoder.model_dump(mode="json"), "latent_frames": cfg.latent_frames,
                "scale": cfg.model.pretransform.scale, "sample_rate": cfg.sample_rate}
    raise KeyError(name)


def checkpoint_layout(cfg: ModelConfig) -> dict[str, tuple]:
    """Every checkpoint key (full name) → shape, for this config."""
    enc = cfg.model.pretransform.config.encoder
    parts = {"conditioners": conditioners(cfg.conditioning), "dit": dit(cfg.dit),
             "decoder": decoder(cfg.decoder), "encoder": encoder(enc.config if enc else None)}
    return {PREFIXES[name] + k: shape for name, keys in parts.items() for k, shape in keys.items()}


def _listing(keys) -> str:
    keys = sorted(keys)
    more = f" … (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def check_keys(shapes: dict[str, tuple], expected: dict, path):
    """Every needed key present with the right shape; nothing unexpected (encoder keys are
    expected but optional). One error names every offending key."""
    optional = PREFIXES["encoder"]
    missing = [k for k in expected if k not in shapes and not k.startswith(optional)]
    unexpected = [k for k in shapes if k not in expected]
    misshaped = [f"{k} {shapes[k]} != {expected[k]}" for k in shapes
                 if k in expected and tuple(shapes[k]) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_listing(misshaped)}")
    if problems:
        field = (missing or unexpected or [m.split(' ')[0] for m in misshaped])[0]
        raise InputError(path, field, "; ".join(problems))


def check_t5_width(config_path, d_model, cond_dim: int):
    """The T5 encoder feeds the DiT directly: its width must be the model's cond_dim."""
    if d_model != cond_dim:
        raise InputError(config_path, "d_model", f"T5 width {d_model} != model config "
                         f"conditioning.cond_dim {cond_dim} (no projection layer in this checkpoint)")
