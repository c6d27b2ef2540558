"""The console while doit builds. On a terminal: one live status line, like Bazel's,
`[7/14] 2 running: conditioners_tflite 63 s, dit_convert 40 s · 812 MB down`, redrawn every
second, with the lines worth keeping (failures, warnings, cache restores) printed above it.
Elsewhere (CI, a log file) or with `-v`: doit's own lines, `.  stage` when one starts, `-- stage`
when one is up to date (the tests read them)."""
import logging
import os
import sys
import threading
import time

from doit.reporter import ConsoleReporter

_CLEAR = "\r\x1b[K"
_lock = threading.RLock()
_live: "StatusReporter | None" = None
bytes_down = None  # () → bytes downloaded so far in this build (set by the session), or None


def live() -> bool:
    """A status line is being drawn (stage processes then keep their lines off the console)."""
    return _live is not None


def wanted(argv, stream=sys.stdout) -> bool:
    """A live line: a terminal, and no `-v` / `--verbosity` asking for doit's lines."""
    verbose = any(a == "--verbosity" or a.startswith("--verbosity=") or
                  (a.startswith("-v") and not a.startswith("--")) for a in argv)
    return stream.isatty() and os.environ.get("TERM") != "dumb" and not verbose


class StatusReporter(ConsoleReporter):
    desc = "a live status line on a terminal"

    def initialize(self, tasks, selected_tasks):
        global _live
        todo, seen = list(selected_tasks), set()
        while todo:
            name = todo.pop()
            if name in seen or name not in tasks:
                continue
            seen.add(name)
            todo.extend(tasks[name].task_dep)
        self.total = sum(1 for n in seen if tasks[n].actions and not n.startswith("_"))
        self.done, self.running = 0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="status-line")
        _live = self
        self._thread.start()

    def line(self) -> str:
        now = time.monotonic()
        names = sorted(self.running.items(), key=lambda kv: kv[1])
        text = f"[{self.done}/{self.total}] {len(names)} running"
        if names:
            text += ": " + ", ".join(f"{n} {now - t0:.0f} s" for n, t0 in names)
        if bytes_down is not None and (down := bytes_down()):
            text += f" · {down / 1e6:.0f} MB down"
        return text

    def _draw(self):
        width = os.get_terminal_size(self.outstream.fileno()).columns if self.outstream.isatty() else 200
        self.outstream.write(_CLEAR + self.line()[:max(width - 1, 20)])
        self.outstream.flush()

    def _tick(self):
        while not self._stop.wait(1.0):
            with _lock:
                self._draw()

    def above(self, text: str):
        """A line to keep: printed above the status line."""
        with _lock:
            self.outstream.write(_CLEAR + text.rstrip("\n") + "\n")
            self._draw()

    def execute_task(self, task):
        if task.actions and not task.name.startswith("_"):
            with _lock:
                self.running[task.name] = time.monotonic()
                self._draw()

    def _finished(self, task):
        with _lock:
            self.running.pop(task.name, None)
            if task.actions and not task.name.startswith("_"):
                self.done += 1
            self._draw()

    def add_success(self, task):
        self._finished(task)

    def skip_uptodate(self, task):
        self._finished(task)

    def add_failure(self, task, fail):
        self._finished(task)
        with _lock:
            self.outstream.write(_CLEAR)
            super().add_failure(task, fail)
            self._draw()

    def complete_run(self):
        global _live
        self._stop.set()
        self._thread.join()
        with _lock:
            self.outstream.write(_CLEAR + self.line() + "\n")
            _live = None
            super().complete_run()


class ConsoleHandler(logging.StreamHandler):
    """The doit process's own log lines: above the status line while one is drawn."""

    def emit(self, record):
        if _live is None:
            return super().emit(record)
        try:
            _live.above(self.format(record))
        except Exception:  # noqa: BLE001 - logging must not fail the build
            self.handleError(record)
