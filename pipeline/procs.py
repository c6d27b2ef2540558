"""Stage processes die with the process that started them: a killed doit or Dask worker leaves
no stage running on (Linux PR_SET_PDEATHSIG, set in the child before it executes)."""
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """subprocess preexec_fn: SIGKILL this child when the thread that started it ends."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
