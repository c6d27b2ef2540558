"""Logging for stages: everything goes to the per-task log, INFO lines also to the console."""
import logging
import os
import sys
import time

FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


def setup(log_path, stage: str) -> logging.Logger:
    """Send this process's fds 1 and 2 (third-party noise included) to `log_path`, and our own
    INFO lines to the original stderr as well."""
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
    root.addHandler(to_console)
    return logging.getLogger(f"sao.{stage}")


class Progress:
    """Log 'what i/n' at most every `every` seconds: long steps show they are alive."""

    def __init__(self, log: logging.Logger, what: str, total: int, every: float = 5.0):
        self.log, self.what, self.total, self.every = log, what, total, every
        self.last = 0.0

    def step(self, i: int):
        now = time.monotonic()
        if i + 1 == self.total or now - self.last >= self.every:
            self.log.info("%s %d/%d", self.what, i + 1, self.total)
            self.last = now
