"""Downloads into a local cache: canonical URLs and mirrors, published md5 checksums, atomic writes.

Where files go: `cache_dir(dataset)` = `$SCRATCHNET_DATA/<dataset>` if that variable is set, else
`$XDG_CACHE_HOME/scratchnet/<dataset>`, else `~/.cache/scratchnet/<dataset>`.

How a file is fetched (`download`):
1. try each mirror URL in turn (a short socket timeout, so a machine without network fails in seconds);
2. stream into a temporary file in the cache folder, with a tqdm progress bar, hashing as it goes;
3. compare the md5 with the published one: a mismatch deletes the temporary file and tries the next
   mirror (a truncated or tampered download never lands in the cache);
4. `os.replace` the temporary file onto its final name: atomic, so an interrupted download never leaves
   a half-written file under the real name.

md5 is what the dataset authors publish (and what torchvision checks); it detects corruption, which is
all we need here. Files found locally are checked by format instead (see idx.py), because Debian's
recompressed copies have different checksums with identical contents.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from scratchnet.errors import DatasetError

TIMEOUT_SECONDS = 15.0  # per connection attempt and per read; offline machines fail fast
CHUNK_BYTES = 1 << 20


def cache_root() -> Path:
    """The folder all downloaded datasets live under ($SCRATCHNET_DATA, else the XDG cache)."""
    if os.environ.get("SCRATCHNET_DATA"):
        return Path(os.environ["SCRATCHNET_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "scratchnet"


def cache_dir(dataset: str) -> Path:
    """The cache sub-folder of one dataset (not created here)."""
    return cache_root() / dataset


def file_md5(path: str | Path) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it onto `path` (atomic on POSIX)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def download(
    urls: list[str],
    destination: str | Path,
    md5: str,
    progress: bool = True,
    opener: Callable = urllib.request.urlopen,
) -> Path:
    """Fetch the first mirror in `urls` whose content has checksum `md5`, atomically, to `destination`.

    `opener(url, timeout=...)` returns a file-like response (urllib's by default; tests pass a fake).
    Raises DatasetError listing every mirror's failure when none worked; nothing is left behind then.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch_one(url, destination, md5, progress, opener)
            return destination
        except (OSError, http.client.HTTPException, ValueError) as err:  # URLError is an OSError
            failures.append(f"  {url}: {getattr(err, 'reason', None) or err}")
    raise DatasetError(f"could not download {destination.name}:\n" + "\n".join(failures))


def _fetch_one(url: str, destination: Path, md5: str, progress: bool, opener: Callable) -> None:
    """Stream one URL into a temporary file next to `destination`; rename it there if the md5 matches."""
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, opener(url, timeout=TIMEOUT_SECONDS) as response:
            total = int(getattr(response, "headers", {}).get("Content-Length") or 0)
            with tqdm(
                total=total or None, unit="B", unit_scale=True, desc=destination.name, disable=not progress
            ) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise ValueError(f"md5 mismatch: got {digest.hexdigest()}, expected {md5}")
        os.replace(tmp_name, destination)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
