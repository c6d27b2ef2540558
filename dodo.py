"""doit entry point: load the profile, hand the stage table to the build layer. Heavy imports
(torch, TF, converters) happen only inside stage processes, so a no-op `doit` stays fast.

    doit                      build the embedded default profile
    doit profile=PATH         build another profile (artifacts/<name>/, its own doit state)
    doit dit_tflite           one target;  doit list;  doit clean
    doit cache_stats          what the shared cache did in the last build
    doit cache_push           upload the whole (up-to-date) build to the shared cache
    doit fetch                download what a restore left in the cache (all of artifacts/ on disk)
    doit report;  doit graph  reports/index.html;  the DAG picture alone
"""
import sys
from pathlib import Path

# The build works in this file's checkout. The `doit` program loads its state-db plugin
# (pipeline.orchestration.statedb) before this file, from wherever the environment installed `pipeline`
# (an editable install points at one checkout): forget those modules, so that a second
# worktree sharing the environment builds with its own code. doit put this folder first on sys.path.
_here = Path(__file__).resolve().parent
for _name in [n for n, m in sys.modules.items() if n.split(".")[0] == "pipeline"
              and not Path(getattr(m, "__file__", None) or _here).resolve().is_relative_to(_here)]:
    del sys.modules[_name]

from doit import get_var  # noqa: E402

from pipeline.orchestration import session  # noqa: E402
from pipeline.orchestration.tasks import to_task  # noqa: E402
from pipeline.core.dag import ALIASES  # noqa: E402

build = session.open_build(get_var("profile", None))
DOIT_CONFIG = session.doit_config(build)


def task_stages():
    for stage in build.table:
        yield to_task(stage, build)
    for name, (doc, deps) in ALIASES.items():
        yield {"basename": name, "doc": doc, "actions": None, "task_dep": deps}
    yield session.generate_task(build.profile)
    yield session.cache_stats_task(build.profile)
    yield session.cache_push_task(build)
    yield session.fetch_task(build)
    yield from session.report_tasks(build.profile)
