"""Logging for stages: everything goes to the per-task log, INFO lines also to the console."""
import json
import logging
import os
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


QUIET_ENV = "SAO_LITERT_CONSOLE"  # "quiet": the doit process draws a status line; keep off the console


def setup(log_path, stage: str) -> logging.Logger:
    """Send this process's fds 1 and 2 (third-party noise included) to `log_path`, and our own
    INFO lines to the original stderr as well (unless the console is the status line's)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = os.fdopen(os.dup(2), "w", buffering=1)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(fd, 1), os.dup2(fd, 2)
    os.close(fd)
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    to_file = logging.StreamHandler(sys.stderr)
    to_file.setFormatter(logging.Formatter(FORMAT))
    to_console = logging.StreamHandler(console)
    to_console.setFormatter(logging.Formatter(f"  {stage}: %(message)s"))
    to_console.addFilter(lambda r: r.name.startswith("sao"))
    root.addHandler(to_file)
    if os.environ.get(QUIET_ENV) != "quiet":
        root.addHandler(to_console)
    return logging.getLogger(f"sao.{stage}")


_measured: dict = {}


def measure(name: str, value):
    """A measurement this stage process made (seconds, its machine's figures): it goes into the
    stage's record, never into an output, so outputs stay the same bytes for the same inputs and
    `cache verify --rebuild` can compare them."""
    _measured[name] = value


def measured() -> dict:
    return dict(_measured)


def record_of(log_file) -> Path:
    """A stage's structured record beside its log (logs/<stage>.json): outcome, seconds, peak
    RSS, where it ran, what the stage measured. Written by the runner; read by the bench and the
    report (never the log)."""
    return Path(log_file).with_suffix(".json")


def read_records(out) -> dict[str, dict]:
    """Every stage's record in a profile's artifacts folder (logs/<stage>.json), by stage."""
    records = {}
    for path in sorted((Path(out) / "logs").glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("stage") == path.stem:
            records[path.stem] = rec
    return records
