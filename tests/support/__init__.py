"""Helpers shared by tests: starting real server processes, loading test data."""
