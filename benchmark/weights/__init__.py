"""Models from their configuration, with the weights a run names: this pipeline's, the authors' release, or a file.

The bridge between the configuration (``benchmark.core``) and the registry (``models``), shared by training,
evaluation, the figures and the tools.
"""
