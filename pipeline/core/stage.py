"""The declaration of one build step (the rows of pipeline/core/dag.py)."""
from dataclasses import dataclass, field, replace
from pathlib import Path

_SEP = "/"  # between a group's name and a member's in a flat role; only this module joins or splits it


@dataclass(frozen=True)
class Stage:
    """One build step: `stages/<module>.py:run(inputs, outputs, config)` turns inputs into outputs.
    Its code dependencies are not declared: the runner records them (pipeline/core/keys.py).

    `inputs` may be given in groups ({"variants": {"dit": {variant: path}}}): the stage's run()
    gets them so (`given`); everything else (doit's file lists, keys, the cache, jobs) sees one
    flat role → path mapping, `inputs`."""
    name: str
    doc: str
    module: str
    inputs: dict[str, Path]
    outputs: dict[str, Path]
    config: dict = field(default_factory=dict)  # only the slice this stage reads
    tools: tuple[str, ...] = ()                  # distributions whose versions key the task

    def __post_init__(self):
        object.__setattr__(self, "inputs", _flat(self.inputs))

    @property
    def given(self) -> dict:
        """The inputs in the groups the table declared them in, as run() receives them."""
        return grouped(self.inputs)

    def moved(self, inputs: dict[str, Path], outputs: dict[str, Path]) -> "Stage":
        """The same stage on other paths (flat roles): a worker's or a rebuild's scratch folder."""
        return replace(self, inputs=grouped(inputs), outputs=outputs)

    def job(self, log: Path, depfile: Path, profile, where: str, memo: Path | None = None) -> dict:
        """The one description of a stage run that `python -m pipeline.core.runner --job FILE`
        reads, here, on a Dask worker or in a rebuild check: the stage, its log and depfile, the
        profile its config came from (named in an input error), where it runs and its memo's folder
        (pipeline/core/memo.py), if any."""
        return {"stage": self.name, "module": self.module, "config": self.config, "tools": list(self.tools),
                "inputs": {r: str(p) for r, p in self.inputs.items()},
                "outputs": {r: str(p) for r, p in self.outputs.items()},
                "log": str(log), "depfile": str(depfile), "profile": str(profile), "where": where,
                "memo": memo and str(memo)}

    @classmethod
    def from_job(cls, job: dict) -> "Stage":
        return cls(job["stage"], "", job["module"], grouped({r: Path(p) for r, p in job["inputs"].items()}),
                   {r: Path(p) for r, p in job["outputs"].items()}, job["config"], tuple(job["tools"]))


def grouped(flat: dict[str, Path]) -> dict:
    """Flat roles (`Stage.inputs`, a job file's) back into their groups."""
    tree: dict = {}
    for role, path in flat.items():
        *groups, last = role.split(_SEP)
        node = tree
        for g in groups:
            node = node.setdefault(g, {})
        node[last] = path
    return tree


def _flat(tree: dict, prefix: str = "") -> dict[str, Path]:
    flat = {}
    for name, value in tree.items():
        if _SEP in name:
            raise ValueError(f"input role {name!r} holds {_SEP!r}: give a group as a mapping instead")
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{name}{_SEP}")
        else:
            flat[prefix + name] = value
    return flat
