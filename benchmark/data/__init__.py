"""Datasets: generation (synthblur), fetching and normalising the benchmarks, decoding, pairing, the decode cache,
augmentation, the dataset identity record and the training/test ``PairedDataset``.

Every folder is normalised to ``<paths.data>/<name>/{train,test}/{blur,sharp}/<name>.png``; every problem is a
:class:`~benchmark.data.errors.DatasetError` (or ``FetchError``) naming the file or folder and the fix.
"""
