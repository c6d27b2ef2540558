"""doit entry point: load the profile, hand the stage table to the core. Heavy imports (torch,
TF, converters) happen only inside stage processes, so a no-op `doit` stays fast.

    doit                      build the embedded default profile
    doit profile=PATH         build another profile (artifacts/<name>/, its own doit state)
    doit dit_tflite           one target;  doit list;  doit clean
    doit cache_stats          what the shared cache did in the last build
    doit cache_push           upload the whole (up-to-date) build to the shared cache
    doit fetch                download what a restore left in the cache (all of artifacts/ on disk)
    doit report;  doit graph  reports/index.html;  the DAG picture alone
"""
import sys

from doit import get_var

from pipeline import session
from pipeline.dag import ALIASES, stages
from pipeline.core import to_task

profile = session.open_profile(get_var("profile", None))
DOIT_CONFIG = session.doit_config(profile)


def task_stages():
    table = stages(profile)
    for stage in table:
        yield to_task(stage, profile)
    for name, (doc, deps) in ALIASES.items():
        yield {"basename": name, "doc": doc, "actions": None, "task_dep": deps}
    yield session.generate_task(profile)
    yield session.cache_stats_task(profile)
    yield session.cache_push_task(profile, table)
    yield session.fetch_task(profile)
    yield from session.report_tasks(profile)
