"""The original stable-audio-tools 0.0.19 as a numerical reference (test-only, installed
--no-deps). torchaudio and k_diffusion are stubbed: nothing on our path uses them."""
import importlib.machinery
import sys
import types

import torch


def _stub(name, **attrs):
    if name in sys.modules:
        return sys.modules[name]
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)  # transformers calls find_spec on it
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def sat():
    """Import the reference modules; undo the global torch flags the package flips on import."""
    transforms = _stub("torchaudio.transforms", Resample=object)
    functional = _stub("torchaudio.functional")
    _stub("torchaudio", transforms=transforms, functional=functional)
    _stub("k_diffusion")
    suppress = torch._dynamo.config.suppress_errors
    from stable_audio_tools.models import autoencoders, conditioners, dit
    from stable_audio_tools.inference import sampling
    torch._dynamo.config.suppress_errors = suppress
    return types.SimpleNamespace(dit=dit, autoencoders=autoencoders, conditioners=conditioners,
                                 sampling=sampling)
