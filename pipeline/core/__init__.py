"""The build's foundation: the profile schema (config) and the model-config one (model_config,
what model stages import), the stage table (dag, stage), stage keys and depfiles (keys),
XXH3-128 hashing, write-then-rename (atomic), tool versions, stage costs and local admission
(resources), the stage process (runner) and the helpers stages share (errors, parity gates,
logging, procs).

May import: the standard library, third-party packages and `runtime`. Nothing else of
`pipeline`; no stage module (stages import this layer)."""
