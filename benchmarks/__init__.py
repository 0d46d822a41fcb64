"""Speed and accuracy benchmark scripts, run from the repository root as `python -m benchmarks.<name>`."""
