"""Child processes of the build: the environment they get (the build's scheduler among it), and
death with their parent (a killed doit or Dask worker leaves no stage running on; Linux
PR_SET_PDEATHSIG, set in the child before it executes)."""
import ctypes
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# The build's Dask scheduler: the user's switch to the Dask executor (pipeline/cluster/executor.py),
# and what a stage process is given when the build has one (for an Arm worker: pipeline/core/aarch64.py).
SCHEDULER_ENV = "SAO_LITERT_SCHEDULER"
# Resolved once, here: a preexec_fn runs between fork and exec, where a threaded parent's child
# must not load libraries (dlopen takes locks another thread may have held at the fork).
_prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl


def die_with_parent():
    """subprocess preexec_fn: SIGKILL this child when the thread that started it ends."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def child_env(**extra) -> dict:
    """This process's environment for a child Python: this interpreter's folder first on PATH
    (onnx2tf runs onnxsim as a program; `doit` and `dask` resolve to this environment's)."""
    env = {**os.environ, **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env
