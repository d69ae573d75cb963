"""Benchmark framework: the same docker CLI against several Engine API daemons, medians and ratios."""
