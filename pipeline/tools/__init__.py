"""What is built around the build: the `sao-litert` command (cli), `./dev bench`, the HTML
report, `sao-litert init`, the PyTorch reference generation, the loopback S3 server of the
tests and the bench.

May import: every layer of `pipeline`, `stages` and `runtime`. Nothing imports it."""
