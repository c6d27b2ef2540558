"""The build side of sao-litert, in layers. Each layer imports only the layers below it (the
import-linter contracts in pyproject.toml, run by `.ci/run`):

    tools/    bench, report, init, the PyTorch reference, the loopback S3 server, the CLI
    build/    doit: stage → task, the restore-or-run action, session, state db, status line
    cluster/  the Dask executor (client side), what a worker runs, build-many
    cache/    the shared build cache: its store, action entries, files left in the store
    core/     what a build is: profile schemas, the stage table, keys, hashing, the stage process

`stages/` (one module per step) imports `pipeline.core` and `runtime` only; `runtime/` (the app
side) imports nothing of the build."""
