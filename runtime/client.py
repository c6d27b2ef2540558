"""A client's flow, in Python: the Arm audiogen app's (kleidiai-examples/audiogen/app/audiogen.cpp)
as that app runs it. Every tensor is addressed by position (the contracts in runtime/vocab.py,
never a name), each model loaded with the layout's XNNPACK flags (FORCE_FP16 on the decoder in
the Arm layout); prompt → ids with the EOS id appended and a mask of ones over the ids; the
ping-pong sampler on the app's sigma schedule. The noise is given (the app draws it from its own
generator), so a PyTorch run with the same noise is comparable.

CompiledModel's Python buffers cannot hold int64, so the conditioners (int64 ids and mask, as the
app writes them) run on the Interpreter without the app's flags; the DiT and the decoder run as
CompiledModels with them."""
from pathlib import Path

import numpy as np

from . import ping_pong
from .litert import ContractError, Model
from .tokenizer import Tokenizer
from .vocab import CONTRACTS, CROSS, GLOBAL, LAYOUTS, ROLES, VELOCITY

_COND = CONTRACTS["conditioners"].outputs
CROSS_AT, GLOBAL_AT, VELOCITY_AT = _COND.index(CROSS), _COND.index(GLOBAL), CONTRACTS["dit"].outputs.index(VELOCITY)


def load(path, role: str, layout: str, threads: int) -> Model:
    """A model as the layout's client loads it."""
    flags = LAYOUTS[layout].xnnpack_flags[role]
    if role == "conditioners":
        flags = None  # int64 inputs: the Interpreter (see the module doc)
    return Model(path, threads, xnnpack_flags=flags)


def condition(model: Model, ids, mask, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(cross-attention input, global condition)."""
    out = model.by_position(ids, mask, np.array([seconds], np.float32))
    return out[CROSS_AT], out[GLOBAL_AT]


def velocity(model: Model, cross, glob, x, t: float) -> np.ndarray:
    return model.by_position(cross, glob, x, np.array([t], np.float32))[VELOCITY_AT]


def decode(model: Model, latent) -> np.ndarray:
    """Planar stereo [2, samples]: the output's first half is the left channel."""
    out = model.by_position(latent)[0].reshape(-1)
    return out.reshape(2, out.size // 2)


def generate(files: dict, spiece: Path, prompt: str, seconds: float, noise: list, steps: int,
             threads: int = 2, layout: str = "arm") -> tuple[np.ndarray, np.ndarray]:
    """One generation through the three files (role → path): (audio [2, samples], final latent)."""
    cond, dit, dec = (load(files[r], r, layout, threads) for r in ROLES)
    ids, mask = Tokenizer(spiece, cond.inputs[CONTRACTS["conditioners"].inputs[0].name]["shape"][-1])(prompt)
    cross, glob = condition(cond, ids, mask, seconds)
    latent = ping_pong.sample(lambda x, t: velocity(dit, cross, glob, x, t), noise, steps)
    return decode(dec, latent), latent


def require_contract(model: Model, role: str, name, client: str, contracts=CONTRACTS):
    """ContractError (one line: the file, the first position that breaks, how many more) unless
    every position holds the tensor the contract puts there."""
    if breaks := contract_breaks(model, role, contracts):
        raise ContractError(f"{name}: {breaks[0]} ({client} addresses the {role} by position"
                            f"{'; %d more' % (len(breaks) - 1) if len(breaks) > 1 else ''})")


def contract_breaks(model: Model, role: str, contracts=CONTRACTS) -> list[str]:
    """Each position whose tensor is not the one the contract puts there (read from the file's
    subgraph order, not from the names the runtime calls it by): "input 0: expects input_ids
    (int64), the file has attention_mask (int64)"."""
    breaks = []
    for kind, want in (("inputs", contracts[role].inputs), ("outputs", contracts[role].outputs)):
        details = model.inputs if kind == "inputs" else model.outputs
        have = [(n, np.dtype(details[n]["dtype"]).name) for n in model.positions[kind]]
        for i in range(max(len(want), len(have))):
            w = (want[i].name, want[i].dtype) if i < len(want) else None
            h = have[i] if i < len(have) else None
            if w != h:
                breaks.append(f"{kind[:-1]} {i}: expects {'%s (%s)' % w if w else 'nothing'}, "
                              f"the file has {'%s (%s)' % h if h else 'nothing'}")
    return breaks
