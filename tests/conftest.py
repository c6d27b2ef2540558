import atexit
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOIT = [sys.executable, "-m", "doit"]
# Every build of this test process (an xdist worker is one) goes to its own artifacts root, never
# into the checkout's artifacts/; a test's own clone builds into that clone's artifacts/.
ARTIFACTS = Path(tempfile.mkdtemp(prefix="sao-litert-tests-"))
os.environ["SAO_LITERT_ARTIFACTS"] = str(ARTIFACTS)
atexit.register(shutil.rmtree, ARTIFACTS, True)
# One file:// store of the project's own build cache for the whole run, shared by the xdist
# workers (made by the controller before they start; a run without xdist makes its own): the
# default profile is built once per run and restored everywhere else. Tests about building
# (from scratch, incrementally, killed, on a cluster) build without it.
if "SAO_LITERT_TEST_RUN_CACHE" not in os.environ:  # the controller's, inherited by the workers
    os.environ["SAO_LITERT_TEST_RUN_CACHE"] = tempfile.mkdtemp(prefix="sao-litert-run-")
RUN_CACHE = Path(os.environ["SAO_LITERT_TEST_RUN_CACHE"])


# The order the two workers are handed files in (pyproject.toml: `--dist loadfile
# --no-loadscope-reorder`), from their share of `--durations=0` in a fresh clone: first a file that
# needs the built default from its first test and little more (its worker builds the default into
# the run's cache) and beside it test_layers.py, whose fixture builds a default of its own from
# scratch in a second checkout (so neither worker waits on the other), then the longest files
# first; the files not named (seconds each) fill the end.
ORDER = ("test_bundle.py", "test_layers.py", "test_cache_trust.py", "test_dask.py", "test_cache.py", "test_aarch64.py",
         "test_bad_inputs.py", "test_reliability.py", "test_hf_source.py", "test_incremental.py", "test_report.py",
         "test_app_set.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda it: ORDER.index(it.path.name) if it.path.name in ORDER else len(ORDER))  # stable


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist): the last one out
        shutil.rmtree(RUN_CACHE, ignore_errors=True)


def shared(env: dict | None = None) -> dict:
    """The environment that builds through the run's shared cache, downloading every output (tests
    read shards and inputs), under a lock: the first worker builds, the others restore."""
    return {"SAO_LITERT_CACHE": RUN_CACHE.as_uri(), "SAO_LITERT_CACHE_MODE": "read-write",
            "SAO_LITERT_CACHE_DOWNLOAD": "all", **(env or {})}


@contextmanager
def run_cache_locked():
    """The run's shared cache, one worker at a time."""
    with open(RUN_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def doit_shared(*args, **kwargs):
    """`doit` through the run's shared cache, one worker at a time."""
    with run_cache_locked():
        return doit(*args, env=shared(kwargs.pop("env", None)), **kwargs)


def in_checkout(clone: Path) -> dict:
    """The environment entry that builds a clone's profiles into the clone's own artifacts/."""
    return {"SAO_LITERT_ARTIFACTS": str(clone / "artifacts")}


def doit(*args, profile=None, env=None, check=True, cwd=REPO):
    """Run doit in a subprocess (in checkout `cwd`); returns CompletedProcess (stdout+stderr in .stdout)."""
    cmd = [*DOIT, *args] + ([f"profile={profile}"] if profile else [])
    e = {**os.environ, **({} if Path(cwd) == REPO else in_checkout(Path(cwd))), **(env or {})}
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}"
    r = subprocess.run(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}")
    return r


DIT_CHAIN = {"dit_reauthor", "dit_convert", "dit_quantize", "verify_dit", "select_app"}  # select_app: the app set
DIT_KEY = "model.model.transformer.layers.1.cross_attn.to_q.weight"


def scale_dit_tensor(state_dict: dict) -> dict:
    """The scripted fine-tune of the scenario tests: one DiT tensor × 0.9 (a flat state dict)."""
    return {**state_dict, DIT_KEY: state_dict[DIT_KEY] * 0.9}


def edit_dit_tensor(ckpt: Path):
    """Apply scale_dit_tensor to a Lightning-layout model.ckpt in place."""
    import torch
    sd = torch.load(ckpt, weights_only=True)
    torch.save({**sd, "state_dict": scale_dit_tensor(sd["state_dict"])}, ckpt)


def executed(output: str) -> set[str]:
    """Task names doit ran ('.  name'); up-to-date ones print '-- name'."""
    return {line[3:].strip() for line in output.splitlines() if line.startswith(".  ")}


@pytest.fixture(scope="session")
def default_build():
    """The default profile, built (once per session) through its shards."""
    doit_shared("checkpoint")
    return ARTIFACTS / "default"


@pytest.fixture(scope="session")
def default_bundle():
    """The default profile built end to end (plain `doit`; built once per run, restored elsewhere)."""
    doit_shared()
    return ARTIFACTS / "default"


def write_profile(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(body)
    return p


# Test profiles that are not about the client checks leave the aarch64 and web checks off
# (tests/test_aarch64.py and test_clients.py cover them; the default profile builds with both on).
NO_AARCH64 = "[targets]\naarch64 = false\nweb = false\n"


def files_source(model: Path, targets: str = NO_AARCH64) -> str:
    """The [source] section of a `kind = "files"` profile over a model folder laid out like inputs/
    (and its [targets])."""
    return (f'[source]\nkind = "files"\nmodel_config_json = "{model}/model_config.json"\n'
            f'checkpoint = "{model}/model.ckpt"\nt5_dir = "{model}/t5"\n' + targets)


def files_profile(tmp_path, default_build, scratch_profile):
    """A `kind = "files"` scratch profile over a copy of the default inputs: (profile, model dir)."""
    d = tmp_path / "model"
    shutil.copytree(default_build / "inputs", d)
    return scratch_profile(files_source(d)), d


@pytest.fixture
def scratch_profile(tmp_path):
    """A uniquely named synthetic profile whose artifacts are removed afterwards."""
    made = []

    def make(body='[source]\nkind = "synthetic"\nseed = 0\n' + NO_AARCH64, name=None):
        name = name or f"t_{tmp_path.name}"[:60]
        made.append(ARTIFACTS / name)
        return write_profile(tmp_path, name, body)
    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
