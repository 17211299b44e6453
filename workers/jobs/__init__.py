"""Job handlers: one module per job type, each exposing ``run(JobContext) -> JobOutput``."""
