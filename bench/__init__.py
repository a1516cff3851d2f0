"""Benchmarks, each measuring a baseline in the same run."""
