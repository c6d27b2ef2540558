"""Parity gates of the verify stages: a report with every check's verdict, one error naming
every failed check (the metrics themselves: runtime/parity.py)."""
import logging

from .atomic import write_json


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
