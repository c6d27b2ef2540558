"""The code a stage's key holds, in a second checkout that shares this one's environment (as a
second `git worktree` would): built with the `doit` program itself, which loads its state-db
plugin from the environment's editable install (this checkout) before the second checkout's
dodo.py. The tests share one build and run in file order."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, executed
from pipeline.core.hashing import file_digest
from pipeline.core.toolchain import aarch64_userland
from pipeline.tools.bench import checkout
from runtime.vocab import MANIFEST

DOIT_PROGRAM = Path(sys.executable).parent / "doit"


def build(tree: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAO_LITERT_ARTIFACTS"}  # the checkout's own artifacts/
    env["SAO_LITERT_AARCH64"] = str(aarch64_userland())  # this checkout's (.aarch64/ is not copied)
    r = subprocess.run([str(DOIT_PROGRAM)], cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    assert r.returncode == 0, r.stdout[-3000:]
    return executed(r.stdout)


def append(tree: Path, rel: str, text: str):
    with open(tree / rel, "a") as f:
        f.write(text)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tree = checkout(tmp_path_factory.mktemp("worktree") / "sao-litert")
    assert "collect" in build(tree)
    assert (tree / "artifacts" / "default" / "bundle" / MANIFEST).is_file()  # its own folder
    return tree


def test_0_two_checkouts_build_byte_identical_bundles(tree, default_bundle):
    """Two clean builds of one profile in two checkouts: the same bundle, byte for byte (nothing
    measured, no path, no date in any file an app or a stage reads)."""
    def files(folder: Path) -> dict:
        return {str(p.relative_to(folder)): file_digest(p) for p in folder.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}
    ours, theirs = files(default_bundle / "bundle"), files(tree / "artifacts" / "default" / "bundle")
    assert MANIFEST in ours and ours == theirs


def test_a_depfiles_hold_the_stage_code_not_the_runner(tree):
    deps = {p.stem: p.read_text() for p in (tree / "artifacts" / "default" / ".deps").glob("*.json")}
    assert "stages/checkpoint.py" in deps["checkpoint"] and "stages/models/layout.py" in deps["checkpoint"]
    assert "runtime/litert.py" in deps["verify_dit"]  # the verify stages run the runtime's own code
    for stage, text in deps.items():
        for own in ("pipeline/core/dag.py", "pipeline/core/runner.py", "pipeline/core/keys.py",
                    "pipeline/core/config.py", "pipeline/orchestration/",
                    "pipeline/cache/", "pipeline/__init__.py", "dodo.py"):
            assert own not in text, (stage, own)


def test_b_comment_in_the_stage_table_rebuilds_nothing(tree):
    append(tree, "pipeline/core/dag.py", "\n# a comment in the stage table\n")
    append(tree, "pipeline/core/runner.py", "\n# a comment in the runner\n")
    append(tree, "pipeline/__init__.py", "\n# a comment beside the layers' docstring\n")
    append(tree, "pipeline/core/config.py", "\n# a comment in the profile's schema (model stages import model_config.py)\n")
    assert build(tree) == set()


def test_c_comment_in_a_stage_module_reruns_that_stage_alone(tree):
    append(tree, "stages/checkpoint.py", "\n# a comment in one stage module\n")
    assert build(tree) == {"checkpoint"}  # its outputs are the same bytes: nothing downstream runs
    assert build(tree) == set()


def test_d_edit_in_an_imported_helper_reruns_the_stages_that_import_it(tree):
    append(tree, "stages/models/decoder.py", "\n# edited: the decoder module\n")
    ran = build(tree)
    assert {"autoencoder_reauthor", "verify_autoencoder"} <= ran
    assert ran <= {"autoencoder_reauthor", "autoencoder_convert", "verify_autoencoder", "select_app",
                   "verify_aarch64", "verify_web", "collect", "attest"}


def test_names_are_spelled_once_in_the_vocabulary():
    """The bundle's names (runtime/vocab.py) are spelled nowhere else in the code: the role triple,
    the manifest's and the tokenizer's file names, the layouts' and the web client's file names."""
    from runtime import vocab
    names = {'"manifest.json"', '"spiece.model"', '("conditioners", "dit", "decoder")',
             *(f'"{f}"' for layout in ("roles",) for f in vocab.LAYOUTS[layout].files.values()),
             f'"{vocab.WEB_CONDITIONERS}"'}
    found = [f"{p.relative_to(REPO)}: {n}" for folder in ("pipeline", "stages", "runtime")
             for p in (REPO / folder).rglob("*.py") if p.name != "vocab.py" for n in names if n in p.read_text()]
    assert found == []


def test_the_independence_contract_names_every_stage_module():
    """pyproject.toml's "stages do not import one another" contract lists exactly the modules the
    stage table runs (every target and every variant on), so a new stage is under it or this fails."""
    import tomllib
    from pipeline.core.config import load_profile
    from pipeline.core.dag import stages
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [listed] = [c["modules"] for c in contracts if c["type"] == "independence"]
    run = {f"stages.{s.module}" for f in ("default.toml", "real-random.toml")
           for s in stages(load_profile(REPO / "profiles" / f))}
    assert "stages.quantize" in run and "stages.verify_web" in run and "stages.synth" in run
    assert sorted(listed) == sorted(run)
