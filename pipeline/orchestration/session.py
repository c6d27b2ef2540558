"""What dodo.py needs besides the stage table: profile loading with one clear error, the
per-profile doit state, the checker, a lock against concurrent builds of one profile, and the
tasks that are not stages (generate, report, graph, cache_stats)."""
import fcntl
import json
import logging
import os
import sys

from pipeline.cache import client as cache
from pipeline.cluster import executor
from pipeline.core.config import Profile, load_profile
from pipeline.core.dag import DONE
from pipeline.core.errors import InputError
from . import checker, status
from .context import Build

_READ_ONLY = {"list", "info", "help", "dumpdb", "tabcompletion", "cache_stats", "graph"}
_NO_BUILD = _READ_ONLY | {"clean", "forget", "ignore", "reset-dep"}  # commands that never run a stage
_lock_fd = None  # held for the life of the doit process; the kernel drops it on any exit


def open_build(path) -> Build:
    """The profile's build, or one error line and exit 2 for a bad profile, [cache] or [executor]."""
    try:
        profile = load_profile(path)
        cache.keys_of(cache.settings(profile), profile)  # a bad [cache] section, $SAO_LITERT_CACHE_MODE
                                                         # or key fails here
        if _command() in _NO_BUILD:
            executor.settings(profile)  # … a Dask executor without a cache here
            cluster = None
        else:
            cluster = executor.connect(profile)  # … the same, and an unreachable scheduler, before any work
    except InputError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(InputError.exit_code)
    profile.out.mkdir(parents=True, exist_ok=True)
    # The doit process's own lines (cache restores and warnings) go to the console.
    console = status.ConsoleHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("sao").addHandler(console)
    logging.getLogger("sao").setLevel(logging.INFO)
    if _command() not in _READ_ONLY:
        _lock(profile)
    return Build(profile, cluster)


def _command() -> str | None:
    args = [a for a in sys.argv[1:] if not a.startswith("-") and "=" not in a]
    return args[0] if args else None


def _lock(profile: Profile):
    global _lock_fd
    path = profile.out / ".lock"
    _lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(_lock_fd, 32, 0).decode(errors="replace").strip() or "?"
        sys.stderr.write(f"error: another doit is building profile '{profile.name}' "
                         f"(pid {holder}, lock {path}); try again when it has finished\n")
        sys.exit(3)
    os.ftruncate(_lock_fd, 0)
    os.pwrite(_lock_fd, str(os.getpid()).encode(), 0)


def doit_config(build: Build) -> dict:
    status.bytes_down = lambda: c.stats["bytes_down"] if (c := build.cache_if_made) else 0
    return {
        "reporter": status.StatusReporter if status.wanted(sys.argv[1:]) else "console",
        "dep_file": str(build.profile.out / ".doit.db"),
        "backend": "sqlite3-durable",    # transactional, committed per task (statedb.py)
        "check_file_uptodate": checker.checker_for(build.registry),  # sees the files kept in the cache
        "par_type": "thread",            # actions only wait on stage subprocesses or Dask tasks
        "num_process": _parallelism(build),
        "verbosity": 2,
        "default_tasks": [DONE],         # and, through its dependencies, everything
        "cleanall": True,                # `doit clean`: every task's targets, and forget them
        "cleanforget": True,
        "action_string_formatting": "new",
    }


def _parallelism(build: Build) -> int:
    """Stages in flight by default: twice the cores here (the admission in pipeline/core/resources.py
    runs one stage process per core, longest remaining chain first, while the others restore,
    upload or wait), or the cluster's threads. `doit -n N` overrides it; `-n 1` is serial."""
    return max(2 * (os.cpu_count() or 1), build.cluster.threads() if build.cluster else 0)


def cache_stats_task(profile: Profile) -> dict:
    """`doit cache_stats`: hits, misses and bytes moved by the last build of this profile."""
    def action():
        log = logging.getLogger("sao.cache")
        path = cache.stats_path(profile)
        if not path.is_file():
            log.info("no build of profile '%s' has run yet", profile.name)
            return
        s = json.loads(path.read_text())
        log.info("cache %s mode %s: %d hits, %d misses, %.1f MB down (%.1f MB more left in the cache), "
                 "%.1f MB up", s["url"] or "(none)", s["mode"], s["hits"], s["misses"], s["bytes_down"] / 1e6,
                 s.get("bytes_left_in_cache", 0) / 1e6, s["bytes_up"] / 1e6)
        for stage, outcome in sorted(s["stages"].items()):
            log.info("  %s: %s", stage, outcome)
        for w in s["warnings"]:
            log.info("  warning: %s", w)

    return {"basename": "cache_stats", "doc": "Cache hits, misses and bytes moved by the last build",
            "actions": [action], "uptodate": [False], "verbosity": 2}


def cache_push_task(build: Build) -> dict:
    """`doit cache_push`: upload every stage of the (then up-to-date) build to the shared cache,
    e.g. to seed it from a build made without one. Blobs already there are not sent again."""
    from doit.exceptions import TaskFailed
    from .tasks import stage_key

    def action():
        c = build.cache
        if not c.writable:
            return TaskFailed(f"cache_push needs a read-write cache: [cache] in {build.profile.path} or $SAO_LITERT_CACHE")
        reg, skipped = build.registry, []
        for stage in build.table:
            try:  # a file a restore left in another store cannot be pushed without its bytes
                elsewhere = [p for p in stage.outputs.values() if (rec := reg.get(p))
                             and c.store().blob_size(rec["digest"]) != rec["size"]]
            except Exception:  # noqa: BLE001 - the store failed: the upload below says so
                elsewhere = []
            if elsewhere:
                skipped.append(stage.name)
                continue
            c.upload(stage, stage_key(stage, build))
            if not c.writable:
                return TaskFailed("cache_push: the store failed (see the warning above)")
        if skipped:
            return TaskFailed(f"cache_push: not pushed: {', '.join(skipped)}: outputs a restore left in another "
                              "store; run `doit fetch` with that store first, then push again")

    return {"basename": "cache_push", "doc": "Upload every stage of the up-to-date build to the shared cache",
            "actions": [action], "task_dep": [DONE], "uptodate": [False], "verbosity": 2}


def fetch_task(build: Build) -> dict:
    """`doit fetch`: bring the build up to date, then download every file a restore kept in the
    cache (pipeline/cache/remote.py), so that all of artifacts/<profile>/ is on disk."""
    from doit.exceptions import TaskFailed
    from pipeline.core.errors import StageFailed
    from .tasks import materialize

    def action():
        paths = build.registry.paths()
        try:
            materialize(build, paths)
        except StageFailed as e:
            return TaskFailed(str(e))
        logging.getLogger("sao.cache").info("%d files on disk that were kept in the cache", len(paths))

    return {"basename": "fetch", "doc": "Download every output a restore left in the cache",
            "actions": [action], "task_dep": [DONE], "uptodate": [False], "verbosity": 2}


def report_tasks(profile: Profile):
    """`doit report`: reports/index.html after the build and its checks; `doit graph`: the DAG picture alone."""
    from doit.exceptions import TaskFailed

    def action(*flags):
        import subprocess
        rc = subprocess.call([sys.executable, "-m", "pipeline.tools.report", str(profile.path), *flags])
        return TaskFailed(f"report failed (exit {rc})") if rc else None

    yield {"basename": "report", "doc": "Build report: artifacts/<profile>/reports/index.html",
           "actions": [action], "task_dep": [DONE], "uptodate": [False], "verbosity": 2}
    yield {"basename": "graph", "doc": "The build DAG alone: reports/dag.svg and dag.png",
           "actions": [(action, ["--graph"])], "uptodate": [False], "verbosity": 2}


def generate_task(profile: Profile) -> dict:
    """`doit generate --prompt … --seconds … --seed … --steps … --out …` on this profile's bundle."""
    import subprocess
    from doit.exceptions import TaskFailed

    def action(prompt, seconds, seed, steps, out):
        cmd = [sys.executable, "-m", "runtime.cli", "generate", "--bundle", str(profile.out / "bundle"),
               "--prompt", prompt, "--seconds", str(seconds), "--seed", str(seed), "--steps", str(steps),
               "--out", out]
        rc = subprocess.call(cmd)
        return TaskFailed(f"generate failed (exit {rc})") if rc else None

    params = [("prompt", str, "warm analog synth pad"), ("seconds", float, 10.0), ("seed", int, 0),
              ("steps", int, profile.generate.steps), ("out", str, str(profile.out / "generated.wav"))]
    return {"basename": "generate", "doc": "Prompt → WAV from the bundle (--prompt --seconds --seed --steps --out)",
            "actions": [action], "task_dep": ["collect"], "uptodate": [False], "verbosity": 2,
            "params": [{"name": n, "long": n, "type": t, "default": d} for n, t, d in params]}
