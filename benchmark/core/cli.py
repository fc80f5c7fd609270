"""The command-line wrapper of every entry point: known errors become one line and exit status 2, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from benchmark.core.errors import HarnessError


@contextmanager
def errors_exit(*extra: type[BaseException]) -> Iterator[None]:
    """Run the body; a :class:`HarnessError` (or one of ``extra``, such as ``models.CheckpointError``) prints
    ``error: <message>`` on stderr and exits with status 2. Anything else is a bug and keeps its traceback."""
    try:
        yield
    except (HarnessError, *extra) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
