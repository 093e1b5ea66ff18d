"""The framework: CLI, pipeline, dataset store, executors, progress and audit."""
