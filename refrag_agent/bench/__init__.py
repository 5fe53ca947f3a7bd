"""Benchmarks behind ``refrag-agent bench``: they print figures and write JSON."""
