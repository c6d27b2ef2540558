"""Ping-pong sampler for rectified-flow denoisers (SAOS: 8 steps), numpy only.

Noise is explicit (the initial x and one draw per step), so a PyTorch run and a LiteRT run
can be fed the same noise and compared."""
import numpy as np


def schedule(steps: int) -> np.ndarray:
    """t_i = sigmoid(-logsnr_i), logsnr = linspace(-6, 2, steps+1); ends forced to 1 and 0."""
    logsnr = np.linspace(-6.0, 2.0, steps + 1, dtype=np.float32)
    t = (1.0 / (1.0 + np.exp(logsnr))).astype(np.float32)
    t[0], t[-1] = 1.0, 0.0
    return t


def noises(seed: int, shape, steps: int) -> list[np.ndarray]:
    """Initial noise + one fresh draw per step, all from one seeded generator."""
    g = np.random.default_rng(seed)
    return [g.standard_normal(shape).astype(np.float32) for _ in range(steps + 1)]


def sample(velocity, noise: list, steps: int, on_step=None):
    """velocity(x, t) → v. Returns the final latent (no decoding). Works on numpy or torch
    arrays as long as `noise` holds that type."""
    t = schedule(steps)
    x = noise[0]
    for i in range(steps):
        denoised = x - float(t[i]) * velocity(x, float(t[i]))
        x = (1 - float(t[i + 1])) * denoised + float(t[i + 1]) * noise[i + 1]
        if on_step:
            on_step(i)
    return x
