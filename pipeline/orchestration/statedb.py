"""doit state backend that keeps what a killed build finished.

doit's sqlite3 backend writes task states only when the run ends, so after a SIGKILL every task
the run had finished ran again. This one commits a task's state as soon as doit has recorded all
of it ('deps:' is the last entry `Dependency.save_success` writes); a half-written state is never
committed. Registered in pyproject.toml ([tool.doit.plugins.backend])."""
from doit.dependency import SqliteDB


class DurableSqliteDB(SqliteDB):
    desc = "sqlite3, committed per finished task"

    def set(self, task_id, dependency, value):
        super().set(task_id, dependency, value)
        if dependency == "deps:":
            self._conn.execute("insert or replace into doit values (?,?)",
                               (task_id, self.codec.encode(self._cache[task_id])))
            self._conn.commit()
            self._dirty.discard(task_id)
