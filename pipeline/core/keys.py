"""Stage keys and depfiles.

A stage's key hashes everything its outputs depend on besides its input files: name, module,
config slice, tool versions, Python and platform, the build format and the XXH3-128 of every
project file the stage's own code imported or read. That list is not kept by hand: the runner
records it after the stage ran (like a compiler's depfile, `artifacts/<profile>/.deps/<stage>.json`;
pipeline/core/runner.py) and the next doit reads it back. The runner's and the build tool's own
modules are not in it. doit compares the key to decide whether a stage re-runs; the action key
adds the input digests (by role) and names the stage's result in the shared cache. Only
repository-relative paths enter a key, so checkouts in different folders or machines agree."""
import ast
import json
import platform
import sys
from functools import cached_property
from pathlib import Path

from . import toolchain
from .atomic import write_json
from .config import REPO
from .hashing import file_digest, json_digest

# Bump when the runner's output semantics or the cache's entry format change: every key changes.
BUILD_FORMAT = 2
_SKIP = ("artifacts", ".venv", ".git")


def depfile(out: Path, stage: str) -> Path:
    return out / ".deps" / f"{stage}.json"


def read_depfile(path: Path) -> list[str]:
    """The project files a stage's last run used; [] when it never ran here."""
    try:
        return json.loads(Path(path).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def write_depfile(path: Path, files):
    write_json(path, {"files": sorted(set(files))})


def project_file(path) -> str | None:
    """The repository-relative name of a project source or data file, else None (third-party
    code, the standard library, build artifacts)."""
    try:
        rel = Path(path).resolve().relative_to(REPO)
    except (ValueError, OSError):
        return None
    if (not rel.parts or rel.parts[0] in _SKIP or "__pycache__" in rel.parts
            or rel.parts[0].endswith(".egg-info") or not (REPO / rel).is_file()):
        return None
    return rel.as_posix()


def code_digests(files) -> dict[str, str]:
    return {rel: file_digest(REPO / rel) if (REPO / rel).is_file() else "absent" for rel in files}


def key_parts(stage, code) -> dict:
    """Everything but the input files: what doit's up-to-date check compares."""
    return {"format": BUILD_FORMAT, "stage": stage.name, "module": stage.module, "config": stage.config,
            "tools": toolchain.versions(stage.tools), "outputs": sorted(stage.outputs),
            "python": "%d.%d" % sys.version_info[:2], "platform": f"{sys.platform}-{platform.machine()}",
            "code": code_digests(code)}


class StageKey:
    """A stage's keys for one action, computed once and handed down: `local` (doit's up-to-date
    value), `action` (the cache entry's name: `local`'s parts plus the input digests by role) and
    `bare` (the same without code: where the cache records which files a stage's code was)."""

    def __init__(self, stage, code, inputs: dict[str, str]):
        self.stage, self.code, self.inputs = stage, sorted(set(code)), dict(inputs)

    @cached_property
    def parts(self) -> dict:
        return key_parts(self.stage, self.code)

    @cached_property
    def local(self) -> str:
        return json_digest(self.parts)

    @cached_property
    def action(self) -> str:
        return json_digest({**self.parts, "inputs": self.inputs})

    @cached_property
    def bare(self) -> str:
        return json_digest({**self.parts, "code": {}, "inputs": self.inputs})

    def with_code(self, code) -> "StageKey":
        return self if sorted(set(code)) == self.code else StageKey(self.stage, code, self.inputs)


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _static_imports(name: str, file: Path) -> set[str]:
    """The project modules a module's source imports anywhere (function-level imports too), with
    the packages each import executes."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_bytes())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    out = set()
    for mod in found:
        parts = mod.split(".")
        out.update(p for i in range(1, len(parts) + 1) if _module_file(p := ".".join(parts[:i])))
    return out


def _executes_nothing(file: Path) -> bool:
    """A package's __init__.py that holds at most a docstring: editing it changes no behaviour."""
    body = ast.parse(file.read_bytes()).body
    return not body or (len(body) == 1 and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str))


def stage_code(module: str, loaded: set[str], opened=()) -> list[str]:
    """What a stage's key holds of the project: the modules the stage module reaches through its
    imports that its process loaded (`loaded`: module names), and the project files other than
    Python sources that it opened. The runner's own modules are not reached, so not included."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or (file := _module_file(name)) is None:
            continue
        seen.add(name)
        todo.extend(_static_imports(name, file))
    files = [_module_file(m) for m in seen & set(loaded)]
    rels = {project_file(f) for f in files
            if not (f.name == "__init__.py" and _executes_nothing(f))}
    rels |= {rel for p in opened if not str(p).endswith((".py", ".pyc")) and (rel := project_file(p))}
    return sorted(r for r in rels if r)
