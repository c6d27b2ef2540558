"""The PyTorch reference generation: the re-authored modules from their shards, run on the noise
the LiteRT side gets (runtime/ping_pong.py works on torch tensors too), so the two can be compared.
The one place select_app, the client checks and `generate --reference` get it from."""
import torch

from runtime import ping_pong
from runtime.tokenizer import Tokenizer

from . import conditioners, decoder, dit


class Reference:
    def __init__(self, cond_shard, t5_config, dit_shard, decoder_shard, spiece):
        self.cond, example = conditioners.from_shard(cond_shard, t5_config)
        self.dit, self.dit_example = dit.from_shard(dit_shard)
        self.decoder, self.decoder_example = decoder.from_shard(decoder_shard)
        self.tokenizer = Tokenizer(spiece, example[0].shape[1])

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

    @torch.no_grad()
    def generate(self, prompt: str, seconds: float, noise: list, steps: int, on_stage=None):
        """(audio [channels, samples], final latent) as numpy; on_stage(name) after each part."""
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
