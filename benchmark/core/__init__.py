"""The harness's base: configuration, the on-disk layout, atomic writes, hashing, devices, MLflow, the CLI wrapper.

Imports nothing else of the project (tests/test_imports.py enforces it), so every other package may build on it.
"""
