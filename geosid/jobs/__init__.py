"""The pipeline's stages, and nothing else: pure `DataFrame -> DataFrame` transforms plus
a thin `run_*` per stage that reads its explicit inputs and writes its tables through a
`geosid.lake.Lake`. Orchestration (which stage, in what order, for which dates) is
`geosid.pipeline`'s."""
