"""Benchmarks: scripts that measure the service, run by hand (not part of the test suite)."""
