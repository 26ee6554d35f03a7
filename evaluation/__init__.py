"""Metrics, judges and the benchmark."""
