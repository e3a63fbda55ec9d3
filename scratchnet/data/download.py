"""Downloads into a local cache: canonical URLs and mirrors, published md5 checksums, atomic writes.

Where files go: `cache_dir(dataset)` = `$SCRATCHNET_DATA/<dataset>` if that variable is set, else
`$XDG_CACHE_HOME/scratchnet/<dataset>`, else `~/.cache/scratchnet/<dataset>` (the rule of
`scratchnet._paths.cache_root`).

How a file is fetched (`download`):
1. try each mirror URL in turn (a short socket timeout, so a machine without network fails in seconds);
2. stream into a temporary file in the cache folder, with a tqdm progress bar, hashing as it goes, within
   an overall deadline (a server dripping a byte at a time never trips the per-read timeout);
3. compare the md5 with the published one: a mismatch deletes the temporary file and tries the next
   mirror (a truncated or tampered download never lands in the cache);
4. rename the temporary file onto its final name (`scratchnet._paths.atomic_write`), so an interrupted
   download never leaves a half-written file under the real name.

md5 is what the dataset authors publish (and what torchvision checks); it detects corruption, which is
all we need here. Files found locally are checked by format instead (see idx.py), because Debian's
recompressed copies have different checksums with identical contents.
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from scratchnet._paths import DiskFullError, atomic_write, cache_root
from scratchnet.errors import DatasetError

TIMEOUT_SECONDS = 15.0  # per connection attempt and per read; offline machines fail fast
DEADLINE_SECONDS = 30 * 60.0  # per file, in all: CIFAR-10's 163 MB at 100 kB/s
CHUNK_BYTES = 1 << 20


def cache_dir(dataset: str) -> Path:
    """The cache sub-folder of one dataset (not created here)."""
    return cache_root("SCRATCHNET_DATA") / dataset


def download(
    urls: list[str],
    destination: str | Path,
    md5: str,
    progress: bool = True,
    opener: Callable = urllib.request.urlopen,
    deadline_seconds: float = DEADLINE_SECONDS,
) -> Path:
    """Fetch the first mirror in `urls` whose content has checksum `md5`, atomically, to `destination`.

    `opener(url, timeout=...)` returns a file-like response (urllib's by default; tests pass a fake).
    Raises DatasetError listing every mirror's failure when none worked; nothing is left behind then.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    deadline = time.monotonic() + deadline_seconds
    for url in urls:
        try:
            _fetch_one(url, destination, md5, progress, opener, deadline)
            return destination
        except DiskFullError as err:
            raise DatasetError(f"could not download {destination.name}: {err}") from None
        except (OSError, http.client.HTTPException, ValueError) as err:  # URLError is an OSError
            failures.append(f"  {url}: {getattr(err, 'reason', None) or err}")
    raise DatasetError(f"could not download {destination.name}:\n" + "\n".join(failures))


def _fetch_one(
    url: str, destination: Path, md5: str, progress: bool, opener: Callable, deadline: float
) -> None:
    """Stream one URL into a temporary file next to `destination`; rename it there if the md5 matches.

    A server that sends a byte now and then never trips the per-read timeout, so the whole transfer also
    has an overall deadline (`time.monotonic()` value), checked after every chunk.
    """

    def fetch(out) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        with opener(url, timeout=TIMEOUT_SECONDS) as response:
            read = getattr(response, "read1", response.read)  # read1: what has arrived, without waiting
            total = int(getattr(response, "headers", {}).get("Content-Length") or 0)
            with tqdm(
                total=total or None, unit="B", unit_scale=True, desc=destination.name, disable=not progress
            ) as bar:
                for chunk in iter(lambda: read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"too slow: not complete after {DEADLINE_SECONDS:.0f} s")
        if digest.hexdigest() != md5:  # raised before the rename: a bad file never gets the real name
            raise ValueError(f"md5 mismatch: got {digest.hexdigest()}, expected {md5}")

    atomic_write(destination, fetch)
