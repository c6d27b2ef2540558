"""Stages on a Dask cluster: the client side (executor), what a worker runs (worker), and
`sao-litert build-many` (many).

May import: `pipeline.cache`, `pipeline.core`. Not the build or the tools."""
