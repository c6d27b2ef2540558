"""The build with doit: stage → task dicts and the restore-or-run action (tasks), the doit
session (profile, lock, state, the tasks that are not stages), the durable state db, doit's
checker and the live status line.

May import: `pipeline.cluster`, `pipeline.cache`, `pipeline.core`. Not the tools."""
