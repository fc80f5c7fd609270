"""Errors of the data layer; each message names the file or folder and says what to do."""

from __future__ import annotations

from benchmark.core.errors import ConfigError, HarnessError


class DatasetError(HarnessError, ValueError):
    """A dataset folder or image that cannot be used."""


class FetchError(HarnessError, RuntimeError):
    """A dataset could not be fetched, verified, extracted or normalised."""


class ChecksumError(FetchError):
    """An archive's SHA-256 differs from the pinned one; the file was moved aside."""


class UnsafeArchiveError(FetchError):
    """An archive member would escape the extraction folder or is not a regular file, folder or inner link."""


class SynthError(ConfigError):
    """Generator parameters that cannot make a dataset (a photo too small for the crop, shared scenes)."""
