"""Parity metrics and reports shared by the verify stages (numpy only)."""
import logging

import numpy as np

from .atomic import write_json


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


class ParityError(Exception):
    pass


def gate(report: dict, checks: list[tuple[str, float, str, float]], path, log: logging.Logger):
    """checks: (label, value, '<=' or '>=', limit). Writes the report with its verdicts, logs a
    table, and raises ParityError naming every failed check."""
    failed = []
    report["checks"] = []
    for label, value, op, limit in checks:
        ok = value <= limit if op == "<=" else value >= limit
        report["checks"].append({"check": label, "value": value, "op": op, "limit": limit, "pass": ok})
        log.info("%-34s %12.4g %s %-10.4g %s", label, value, op, limit, "ok" if ok else "FAIL")
        if not ok:
            failed.append(f"{label} = {value:.4g} (limit {op} {limit:.4g})")
    report["pass"] = not failed
    write_json(path, report)
    if failed:
        raise ParityError("parity failed: " + "; ".join(failed))
