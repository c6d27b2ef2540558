"""`generate --reference`: the same generation with the PyTorch modules (from a built profile's
shards and T5 folder) and the same noise: the build side's check of what the runtime made."""
import time


def generate(profile_path, req, noise):
    """(audio [channels, samples], final latent, seconds per stage: the keys generate.generate uses)."""
    import torch
    torch.set_num_threads(req.threads)
    from pipeline.core.config import load_profile
    from pipeline.core.dag import source_files
    from runtime.vocab import ROLES
    from stages.models.reference import Reference

    times = {}
    t0 = time.perf_counter()
    profile = load_profile(profile_path)
    src, shards = source_files(profile), profile.out / "shards"
    for f in [*(shards / f"{k}.safetensors" for k in ROLES),
              *(src[k] for k in ("t5_config", "t5_weights", "spiece"))]:
        if not f.is_file():
            raise OSError(f"{f}: not on disk (a restore from the build cache keeps it there): run "
                          f"`doit fetch profile={profile_path}`")
    ref = Reference(shards / "conditioners.safetensors", src["t5_config"], shards / "dit.safetensors",
                    shards / "decoder.safetensors", src["spiece"])
    times["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()

    def lap(stage):
        nonlocal t0
        times["dit_total" if stage == "dit" else stage] = time.perf_counter() - t0
        t0 = time.perf_counter()
    audio, latent = ref.generate(req.prompt, req.seconds, noise, req.steps, lap)
    times["dit_step"] = times["dit_total"] / req.steps
    return audio, latent, times
