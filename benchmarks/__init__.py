"""Benchmarks: scripts that print a table, write JSON, and compare against a raw baseline measured in the same run."""
