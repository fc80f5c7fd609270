"""Downloading an archive: each URL in turn, resumed with HTTP ``Range`` after an interruption, HTML pages refused.

A source that answers with an HTML page (a Google Drive confirmation page, a login wall) counts as not answering.
When no source answers, the error lists every URL tried with its failure and the exact place to put the file.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from benchmark.core.sections import FetchConfig
from benchmark.data.errors import FetchError

CHUNK = 1 << 20


def download(url: str, dest: Path, *, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming ``<dest>.part`` with an HTTP Range request; returns ``dest``.

    The partial file survives an interruption (a dropped connection, a killed process), so calling again continues
    where it stopped. A server that ignores the Range header restarts the file from zero.

    Raises:
        FetchError: the server failed, answered with an HTML page, or the transfer ended short (the ``.part`` file is
            kept for the next attempt).
    """
    # Not benchmark.core.atomic: the partial file must outlive an interruption so that the next call resumes it;
    # only the final rename makes ``dest`` appear, whole.
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "msfs-bench-fetch", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the partial file is already complete
            os.replace(part, dest)
            return dest
        raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise FetchError(f"{url}: {getattr(err, 'reason', err)}") from err
    with response:
        if "text/html" in response.headers.get("Content-Type", ""):
            raise FetchError(f"{url}: answered with an HTML page, not the archive (a confirmation or login page?)")
        resumed = response.status == 206 and have > 0
        if resumed:
            first = response.headers.get("Content-Range", "").split(" ")[-1].split("-")[0]
            if first != str(have):
                raise FetchError(f"{url}: asked to resume at byte {have}, got Content-Range {first!r}")
        else:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        written = have
        with (
            open(part, "ab" if resumed else "wb") as f,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False
            ) as bar,
        ):
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:  # a dropped connection: IncompleteRead, reset
                raise FetchError(
                    f"{url}: transfer interrupted at {written} bytes ({err}); run again to resume"
                ) from err
    if total is not None and written != total:
        raise FetchError(f"{url}: transfer ended at {written} of {total} bytes; run again to resume from {part}")
    os.replace(part, dest)
    return dest


def obtain_archive(spec: FetchConfig, placed: Path, *, archive: Path | None = None, progress: bool = True) -> Path:
    """The archive to use: ``archive`` if given, a hand-placed one at ``placed``, else a download there."""
    if archive is not None:
        if not archive.is_file():
            raise FetchError(f"archive={archive} does not exist; pass the path of the downloaded archive")
        return archive
    if placed.is_file():
        return placed
    failures = []
    for url in spec.urls:
        try:
            return download(url, placed, progress=progress)
        except FetchError as err:
            failures.append(str(err))
    tried = "\n  ".join(failures) if failures else "(no URLs configured)"
    raise FetchError(
        f"{spec.archive}: no source answered. Tried:\n  {tried}\n"
        f"Download it by hand and place it at {placed} (or pass archive=PATH), then run again."
    )
