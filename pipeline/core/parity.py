"""Parity gates of the verify stages: a report with every check's verdict, one error naming
every failed check (the metrics themselves: runtime/parity.py). A check of a precision variant
(a fifth element, its name) does not fail the stage: its verdict goes to report["variants"],
read by select_app, which leaves a failed variant out of the app's choice (and fails the build
when the profile pins it)."""
import logging

from .atomic import write_json


class ParityError(Exception):
    pass


def gate(report: dict, checks: list[tuple], path, log: logging.Logger):
    """checks: (label, value, '<=' or '>=', limit[, variant]). Writes the report with its
    verdicts, logs a table, and raises ParityError naming every failed check that names no variant."""
    failed = []
    report["checks"], report["variants"] = [], {}
    for label, value, op, limit, *variant in checks:
        ok = bool(value <= limit if op == "<=" else value >= limit)
        report["checks"].append({"check": label, "value": value, "op": op, "limit": limit, "pass": ok,
                                 **({"variant": variant[0]} if variant else {})})
        log.info("%-34s %12.4g %s %-10.4g %s", label, value, op, limit,
                 "ok" if ok else "FAIL" if not variant else f"FAIL: {variant[0]} left out of the app's choice")
        if variant:
            v = report["variants"].setdefault(variant[0], {"pass": True, "checks": []})
            v["pass"] &= ok
            v["checks"].append(label)
        elif not ok:
            failed.append(f"{label} = {value:.4g} (limit {op} {limit:.4g})")
    report["pass"] = not failed
    write_json(path, report)
    if failed:
        raise ParityError("parity failed: " + "; ".join(failed))
