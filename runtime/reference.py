"""`generate --reference`: the same generation with the PyTorch modules (from a built profile's
shards and T5 folder) and the same noise. The only runtime path that imports torch."""
import numpy as np

from . import ping_pong


def generate(profile_path, req, noise):
    import torch
    from pipeline.config import load_profile
    from pipeline.dag import source_files
    from stages.autoencoder_reauthor import build as build_decoder
    from stages.conditioners_onnx import build as build_conditioners
    from stages.dit_reauthor import build as build_dit
    from .tokenizer import Tokenizer

    profile = load_profile(profile_path)
    src, shards = source_files(profile), profile.out / "shards"
    cond, example = build_conditioners(shards / "conditioners.safetensors", src["t5_config"])
    dit, _ = build_dit(shards / "dit.safetensors")
    decoder, _ = build_decoder(shards / "decoder.safetensors")
    ids, mask = Tokenizer(src["spiece"], example[0].shape[1])(req.prompt)
    with torch.no_grad():
        cross, _, glob = cond(torch.from_numpy(ids), torch.from_numpy(mask), torch.tensor([req.seconds]))

        def velocity(x, t):
            return dit(x, torch.tensor([t]), cross, glob)

        latent = ping_pong.sample(velocity, [torch.from_numpy(n) for n in noise], req.steps)
        audio = decoder(latent)
    return audio[0].numpy(), latent.numpy()


def snr_db(ref, got) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return float(10 * np.log10((ref ** 2).sum() / max(((got - ref) ** 2).sum(), 1e-300)))
