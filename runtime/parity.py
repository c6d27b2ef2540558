"""Parity metrics (numpy only): how far an output is from its reference. The build's verify
stages gate on them; the app side can run them too (the aarch64 check does)."""
import numpy as np


def metrics(ref, got) -> dict:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"shape {got.shape} != reference {ref.shape}")
    err = got - ref
    max_abs = float(np.abs(err).max())
    scale = float(np.abs(ref).max())
    noise = float((err ** 2).sum())
    return {"max_abs": max_abs, "rel": max_abs / scale if scale else float("inf"),
            "snr_db": float(10 * np.log10((ref ** 2).sum() / noise)) if noise else float("inf"),
            "ref_max_abs": scale}


def worst(cases: list[dict]) -> dict:
    """Across cases: the largest errors and the smallest SNR."""
    return {"max_abs": max(c["max_abs"] for c in cases), "rel": max(c["rel"] for c in cases),
            "snr_db": min(c["snr_db"] for c in cases), "ref_max_abs": max(c["ref_max_abs"] for c in cases)}
