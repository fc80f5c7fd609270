"""Scoring: the metrics, the protocols, the loop that validation and evaluation share, and the statistics of scores.

Pure functions over tensors (no file I/O): the caller states the protocol (``benchmark.core.sections.ScoringProtocol``).
"""
