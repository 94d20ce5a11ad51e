"""A resumable task × method × seed learning benchmark: ``python -m benchmarks.learning.run`` (see README.md)."""
