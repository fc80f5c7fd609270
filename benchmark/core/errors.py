"""The errors every entry point reports as one clear line (``error: ...``, exit status 2) instead of a traceback."""

from __future__ import annotations


class HarnessError(Exception):
    """A problem the user can fix (a bad key, a missing file, a corrupt archive); the message says what to do."""


class ConfigError(HarnessError, ValueError):
    """A configuration value is missing, unknown or out of range.

    The message reads ``<dotted key>: <what is wrong> (from <file>)``: ``key`` is the dotted key, ``source`` the file
    (or the command line) the value came from, added by the loader once it knows (:meth:`with_source`).
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.key, self.message, self.source = key, message, source
        text = f"{key}: {message}" if key else message
        super().__init__(f"{text} (from {source})" if source else text)

    def with_source(self, source: str) -> ConfigError:
        """The same error, naming where the value came from (kept if already named)."""
        if self.source is not None:
            return self
        return ConfigError(self.message, key=self.key, source=source)
