"""Running steps outside a single process: content-addressed step runs, KFP submission,
one component in Docker."""
