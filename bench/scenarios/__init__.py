"""Benchmark scenarios: every module here is imported by bench/run and registers its scenarios.

To add one (pull, exec, build, compose, network...), add a module with a @scenario class.
"""
