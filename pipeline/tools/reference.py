"""`generate --reference`: the same generation with the PyTorch modules (from a built profile's
shards and T5 folder) and the same noise: the build side's check of what the runtime made."""
import time

from runtime import ping_pong


def generate(profile_path, req, noise):
    """(audio [channels, samples], final latent, seconds per stage: the keys generate.generate uses)."""
    import torch
    torch.set_num_threads(req.threads)
    from pipeline.core.config import load_profile
    from pipeline.core.dag import source_files
    from runtime.tokenizer import Tokenizer
    from stages.models import conditioners, decoder, dit

    times = {}
    t0 = time.perf_counter()
    profile = load_profile(profile_path)
    src, shards = source_files(profile), profile.out / "shards"
    for f in [*(shards / f"{k}.safetensors" for k in ("conditioners", "dit", "decoder")),
              *(src[k] for k in ("t5_config", "t5_weights", "spiece"))]:
        if not f.is_file():
            raise OSError(f"{f}: not on disk (a restore from the build cache keeps it there): run "
                          f"`doit fetch profile={profile_path}`")
    cond, example = conditioners.from_shard(shards / "conditioners.safetensors", src["t5_config"])
    dit_model, _ = dit.from_shard(shards / "dit.safetensors")
    decoder_model, _ = decoder.from_shard(shards / "decoder.safetensors")
    tok = Tokenizer(src["spiece"], example[0].shape[1])
    times["load"] = time.perf_counter() - t0
    with torch.no_grad():
        t0 = time.perf_counter()
        ids, mask = tok(req.prompt)
        cross, _, glob = cond(torch.from_numpy(ids), torch.from_numpy(mask), torch.tensor([req.seconds]))
        times["conditioners"] = time.perf_counter() - t0

        def velocity(x, t):
            return dit_model(x, torch.tensor([t]), cross, glob)

        t0 = time.perf_counter()
        latent = ping_pong.sample(velocity, [torch.from_numpy(n) for n in noise], req.steps)
        times["dit_total"] = time.perf_counter() - t0
        times["dit_step"] = times["dit_total"] / req.steps
        t0 = time.perf_counter()
        audio = decoder_model(latent)
        times["decoder"] = time.perf_counter() - t0
    return audio[0].numpy(), latent.numpy(), times
