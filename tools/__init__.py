"""Project scripts: demo, benchmarks, training and reports (run as `python -m tools.NAME`)."""
