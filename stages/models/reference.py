"""The PyTorch reference generation: the re-authored modules from their shards, run on the noise
the LiteRT side gets (runtime/ping_pong.py works on torch tensors too), so the two can be compared.
The one place select_app, the client checks and `generate --reference` get it from. In a stage
with a memo (pipeline/core/memo.py) a generation, a DiT call or a decode is recalled for the same
modules' files and arguments: at real size the reference generation alone takes about a minute,
and a check re-run after an edit of one model needs the same one again."""
import numpy as np
import torch

from pipeline.core import memo
from runtime import ping_pong
from runtime.files import xxh3_128
from runtime.tokenizer import Tokenizer

from . import conditioners, decoder, dit


class Reference:
    def __init__(self, cond_shard, t5_config, dit_shard, decoder_shard, spiece):
        self.cond, example = conditioners.from_shard(cond_shard, t5_config)
        self.dit, self.dit_example = dit.from_shard(dit_shard)
        self.decoder, self.decoder_example = decoder.from_shard(decoder_shard)
        self.tokenizer = Tokenizer(spiece, example[0].shape[1])
        self.files = {"conditioners": cond_shard, "t5_config": t5_config, "dit": dit_shard, "decoder": decoder_shard,
                      "spiece": spiece}
        self._digests = None

    @classmethod
    def of(cls, files: dict) -> "Reference":
        """From a stage's "reference" inputs (pipeline/core/dag.py)."""
        return cls(files["cond_shard"], files["t5_config"], files["dit_shard"], files["decoder_shard"], files["spiece"])

    @property
    def latent_shape(self) -> list[int]:
        return list(self.decoder_example["latent"].shape)

    @torch.no_grad()
    def condition(self, prompt: str, seconds: float):
        """(cross-attention input, its mask, global condition) as torch tensors."""
        ids, mask = self.tokenizer(prompt)
        return self.cond(torch.from_numpy(ids), torch.from_numpy(mask), torch.tensor([seconds], dtype=torch.float32))

    def _recalled(self, what: str, args: dict, compute) -> dict[str, np.ndarray]:
        """compute()'s arrays, or the memo's for the same modules' files and args."""
        if not memo.active():
            return compute()
        if self._digests is None:
            self._digests = {k: xxh3_128(f) for k, f in self.files.items()}
        return memo.arrays({"what": f"PyTorch {what}", "modules": self._digests, **args}, compute)

    def velocity(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The DiT on one case (numpy, by input name)."""
        def compute():
            with torch.no_grad():
                return {"v": self.dit(**{k: torch.from_numpy(v) for k, v in feed.items()}).numpy()}
        return self._recalled("dit", {k: memo.array_key(v) for k, v in feed.items()}, compute)["v"]

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """The decoder on one latent (numpy): the audio."""
        def compute():
            with torch.no_grad():
                return {"audio": self.decoder(torch.from_numpy(latent)).numpy()}
        return self._recalled("decoder", {"latent": memo.array_key(latent)}, compute)["audio"]

    def generate(self, prompt: str, seconds: float, noise: list, steps: int, on_stage=None):
        """(audio [channels, samples], final latent) as numpy; on_stage(name) after each part."""
        def compute():
            return dict(zip(("audio", "latent"), self._generate(prompt, seconds, noise, steps, on_stage)))
        out = self._recalled("generation", {"prompt": prompt, "seconds": seconds, "steps": steps,
                                            "noise": [memo.array_key(n) for n in noise]}, compute)
        return out["audio"], out["latent"]

    @torch.no_grad()
    def _generate(self, prompt: str, seconds: float, noise: list, steps: int, on_stage):
        cross, _, glob = self.condition(prompt, seconds)
        if on_stage:
            on_stage("conditioners")
        latent = ping_pong.sample(lambda x, t: self.dit(x, torch.tensor([t]), cross, glob),
                                  [torch.from_numpy(n) for n in noise], steps)
        if on_stage:
            on_stage("dit")
        audio = self.decoder(latent)
        if on_stage:
            on_stage("decoder")
        return audio[0].numpy(), latent.numpy()
