"""One error type for bad input: it names the file and the field, and becomes one line + exit 2."""
from pathlib import Path


class InputError(Exception):
    exit_code = 2

    def __init__(self, file, field: str | None, message: str):
        self.file = str(file) if file is not None else None
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self):
        where = self.file or "<input>"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


def pydantic_error(file: Path, exc) -> InputError:
    """Turn a pydantic ValidationError into an InputError naming the first bad field path."""
    errs = exc.errors()
    parts = []
    for e in errs[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    first = ".".join(str(p) for p in errs[0]["loc"]) if errs else None
    more = f" (+{len(errs) - 5} more)" if len(errs) > 5 else ""
    return InputError(file, first, "; ".join(parts) + more)


class StageFailed(Exception):
    """A stage failed where it ran (here or on a worker): the message names the stage, its exit
    status or error line, and its log; `span`: when the failed run started and ended (Unix s), if
    measured where it ran."""
    def __init__(self, message: str, span: tuple[float, float] | None = None):
        super().__init__(message)
        self.span = span
