"""Stage declarations → doit task dicts. The stage table itself lives in pipeline/dag.py."""
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from doit.exceptions import TaskFailed

from . import toolchain
from .config import REPO
from .hashing import json_digest


@dataclass(frozen=True)
class Stage:
    """One build step: `stages/<module>.py:run(inputs, outputs, config)` turns inputs into outputs."""
    name: str
    doc: str
    module: str
    inputs: dict[str, Path]
    outputs: dict[str, Path]
    config: dict = field(default_factory=dict)  # only the slice this stage reads
    code: tuple[str, ...] = ()                   # source files besides stages/<module>.py
    tools: tuple[str, ...] = ()                  # distributions whose versions key the task
    task_dep: tuple[str, ...] = ()               # order-only dependencies (must pass first)

    @property
    def code_files(self) -> list[Path]:
        files = [f"stages/{self.module}.py", "pipeline/runner.py", *self.code]
        return [REPO / f for f in files]


class KeyUnchanged:
    """doit `uptodate` item: up to date while the digest of (config slice, tool versions) matches
    what was saved at the last successful run (doit's own config check hashes with md5)."""

    def __init__(self, key: dict):
        self.key = key
        self.digest = json_digest(key)

    def __call__(self, task, values):
        task.value_savers.append(lambda: {"stage_key": self.digest})
        return values.get("stage_key") == self.digest


def run_stage(profile_path: Path, stage: str, log_dir: Path):
    """doit action: run one stage in its own process (heavy imports, memory, global side effects
    stay there). The child writes the per-task log; its console lines are progress only."""
    cmd = [sys.executable, "-m", "pipeline.runner", str(profile_path), stage]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    rc = subprocess.call(cmd, cwd=REPO, env=env)
    if rc != 0:
        return TaskFailed(f"stage '{stage}' failed (exit {rc}); log: {log_dir / (stage + '.log')}")
    return None


def to_task(stage: Stage, profile_path: Path, log_dir: Path) -> dict:
    key = {"config": stage.config, "tools": toolchain.versions(stage.tools)}
    return {
        "basename": stage.name,
        "doc": stage.doc,
        "actions": [(run_stage, [profile_path, stage.name, log_dir])],
        "file_dep": [str(p) for p in [*stage.inputs.values(), *stage.code_files]],
        "targets": [str(p) for p in stage.outputs.values()],
        "task_dep": list(stage.task_dep),
        "uptodate": [KeyUnchanged(key)],
        "clean": True,
    }
