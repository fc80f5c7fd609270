"""Evaluation: a model with its weights (optionally converted by TLC) scored on a test split, written as a record.

Never imports training (tests/test_imports.py): scoring is shared through ``benchmark.scoring``.
"""
