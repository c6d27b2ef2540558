"""The shared build cache: the fsspec store (store), action entries and their blobs (entries),
the per-profile client that restores, fetches and uploads (client), and the outputs a restore
left in the store (remote).

May import: `pipeline.core`. Not the cluster, the build or the tools."""
