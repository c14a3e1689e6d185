"""Benchmark of the service against the floor of its own stack (``make bench``; see run.py)."""
