"""The declaration of one build step (the rows of pipeline/dag.py)."""
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Stage:
    """One build step: `stages/<module>.py:run(inputs, outputs, config)` turns inputs into outputs.
    Its code dependencies are not declared: the runner records them (pipeline/core/keys.py)."""
    name: str
    doc: str
    module: str
    inputs: dict[str, Path]
    outputs: dict[str, Path]
    config: dict = field(default_factory=dict)  # only the slice this stage reads
    tools: tuple[str, ...] = ()                  # distributions whose versions key the task
    task_dep: tuple[str, ...] = ()               # order-only dependencies (must pass first)
