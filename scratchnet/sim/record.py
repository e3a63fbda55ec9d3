"""The access record: every load, store and atomic of a launch, for counting what a kernel does.

Load a module with ``checks="record"`` (alone, or with checks: ``"all,record"``); after each launch,
``module.last_record`` is an :class:`AccessRecord` of that launch::

    module = sim.load_module(source, checks="record")
    module.get_function("transpose")((4, 4), (16, 16), (x, y, np.int32(64)))
    module.last_record.counts()         # {'global_loads': 4096, 'global_stores': 4096, 'shared_loads': ...}
    module.last_record.bank_conflicts() # extra shared-memory transactions the warps' accesses would cost
    module.last_record.shared_sites(module.build.library)  # the same, per source line and __shared__ array

It is made in a checked build (every access calls the runtime, see :mod:`.checks`), so it sees what the
kernel's source does, constant offsets and both halves of ``x += ...`` included; accesses to the thread's
own stack and to ``__constant__`` memory are not in it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchnet.sim.checks import source_line

# One access, as runtime.cpp's AccessEvent lays it out.
EVENT = np.dtype(
    [
        ("block", np.uint64),  # linear block index: x + y * gridDim.x + z * gridDim.x * gridDim.y
        ("pc", np.uint64),  # code address in the library (the source line: checks.source_line)
        ("offset", np.int64),  # byte offset in the array argument, or in the block's shared memory
        ("thread", np.int32),  # linear thread index in the block
        ("buffer", np.int32),  # which array argument (see AccessRecord.buffers), or -3: shared memory
        ("size", np.int32),  # bytes
        ("kind", np.int32),  # LOAD, STORE or ATOMIC
    ]
)
LOAD, STORE, ATOMIC = 0, 1, 2
SHARED = -3
BANKS, BANK_BYTES = 32, 4  # shared memory: 32 banks of 4-byte words, as on every GPU since Maxwell
WAVEFRONT_BYTES = BANKS * BANK_BYTES  # one pass of the shared memory delivers one word from each bank


@dataclass(frozen=True)
class AccessRecord:
    """``events``: one row per access (:data:`EVENT`), in the order the simulated threads made them;
    ``barriers``: the ``__syncthreads()`` the blocks passed; ``buffers``: the array argument(s) of each
    buffer index, as in error messages."""

    events: np.ndarray
    barriers: int
    buffers: list[str]

    def counts(self) -> dict[str, int]:
        """Loads and stores of array arguments (global memory) and of shared memory, atomics, barriers."""
        shared, kind = self.events["buffer"] == SHARED, self.events["kind"]
        return {
            "global_loads": int(np.sum(~shared & (kind == LOAD))),
            "global_stores": int(np.sum(~shared & (kind == STORE))),
            "shared_loads": int(np.sum(shared & (kind == LOAD))),
            "shared_stores": int(np.sum(shared & (kind == STORE))),
            "atomics": int(np.sum(kind == ATOMIC)),
            "barriers": self.barriers,
        }

    def warp_accesses(self) -> dict[tuple[int, int, int, int], list[tuple[int, int]]]:
        """The shared-memory accesses grouped as a warp would issue them: one instruction (``pc``) executed
        for the n-th time by the lanes of one warp of one block. Key ``(block, warp, pc, n)``, value the
        ``(offset, size)`` of each lane's access."""
        return {
            key: [(offset, size) for _lane, offset, size, _kind in lanes]
            for key, lanes in self._warp_accesses_with_lanes().items()
        }

    def bank_conflicts(self) -> int:
        """The extra shared-memory transactions of all warp accesses: an access whose lanes touch ``k``
        different 4-byte words in its busiest bank costs ``k`` transactions instead of one (lanes reading
        one word share it). Offsets count from the start of the block's shared memory, assumed 128-byte
        aligned, as a GPU aligns it."""
        extra = 0
        for accesses in self.warp_accesses().values():
            words_per_bank: dict[int, set[int]] = defaultdict(set)
            for offset, size in accesses:
                for word in range(offset // BANK_BYTES, (offset + size - 1) // BANK_BYTES + 1):
                    words_per_bank[word % BANKS].add(word)
            extra += max(len(words) for words in words_per_bank.values()) - 1
        return extra

    def shared_sites(self, library: Path | None = None) -> list[SharedSite]:
        """The warps' shared-memory accesses per site: per instruction (source line), ``__shared__`` array
        and kind, how many passes of the shared memory they take and their worst bank conflict.

        Counting rule: the n-th execution of one instruction by the lanes of one warp is one warp access,
        as :meth:`warp_accesses` groups them. That is what a GPU issues when the lanes run converged, as
        they do in a tiled kernel between its barriers; lanes that diverge and run the instruction at
        different times would be counted as one access here and several on a GPU.

        One pass (a *wavefront*) delivers one 4-byte word from each of the 32 banks, 128 bytes. The lanes
        whose accesses together span at most 128 bytes share a pass: all 32 for 4-byte accesses, each half
        of the warp for 8-byte ones (a ``double``), each quarter for 16-byte ones (a ``float4``); so a
        ``double`` access needs two passes, and that is no conflict. Within a pass, a bank that must deliver
        k different words takes k passes: a k-way conflict (lanes reading the same word share it).

        ``library`` (``module.build.library``) names each site's source line and array; without it (or
        without binutils' ``addr2line`` and ``readelf``) sites are told apart by code address only.
        """
        arrays = shared_arrays(library) if library is not None else []
        sites: dict[tuple[int, str | None, int], list[tuple[int, int]]] = defaultdict(list)
        for (_block, _warp, pc, _n), lanes in self._warp_accesses_with_lanes().items():
            first_offset, kind = lanes[0][1], lanes[0][3]
            array = next((name for start, end, name in arrays if start <= first_offset < end), None)
            sites[pc, array, kind].append(wavefronts(lanes))
        return [
            SharedSite(
                line=(source_line(library, pc) if library is not None else None) or f"pc {pc:#x}",
                array=array,
                kind=("load", "store", "atomic")[kind],
                warp_accesses=len(passes),
                wavefronts=sum(total for total, _ in passes),
                conflict_degree=max(worst for _, worst in passes),
            )
            for (pc, array, kind), passes in sorted(sites.items(), key=lambda item: item[0][0])
        ]

    def _warp_accesses_with_lanes(self) -> dict[tuple[int, int, int, int], list[tuple[int, int, int, int]]]:
        """As :meth:`warp_accesses`, with each lane's ``(lane, offset, size, kind)``."""
        executions: dict[tuple[int, int, int], int] = defaultdict(int)  # (block, thread, pc) -> times so far
        groups: dict[tuple[int, int, int, int], list[tuple[int, int, int, int]]] = defaultdict(list)
        shared = self.events[self.events["buffer"] == SHARED]
        columns = (shared[name].tolist() for name in ("block", "thread", "pc", "offset", "size", "kind"))
        for block, thread, pc, offset, size, kind in zip(*columns, strict=True):
            n = executions[block, thread, pc]
            executions[block, thread, pc] = n + 1
            groups[block, thread // 32, pc, n].append((thread % 32, offset, size, kind))
        return dict(groups)


@dataclass(frozen=True)
class SharedSite:
    """The shared-memory accesses of one instruction to one ``__shared__`` array (:meth:`shared_sites`)."""

    line: str  # "gemm_blocked.cu:48", or the code address when the line is unknown
    array: str | None  # "'tile_a' in gemm_blocked<float>", or None when unknown
    kind: str  # "load", "store" or "atomic"
    warp_accesses: int
    wavefronts: int  # passes of the shared memory that the warp accesses take in all
    conflict_degree: int  # the most words one bank had to deliver in one pass: 1 is conflict-free


def wavefronts(lanes) -> tuple[int, int]:
    """``(passes, worst)`` for one warp access, given each lane's ``(lane, offset, size, ...)``: the passes
    of the shared memory it takes, and the most words one bank delivers in one of them (the conflict
    degree). See :meth:`AccessRecord.shared_sites` for the rule."""
    words: dict[tuple[int, int], set[int]] = defaultdict(set)  # (pass group, bank) -> words asked of it
    for lane, offset, size, *_ in lanes:
        group = lane * size // WAVEFRONT_BYTES  # lanes whose accesses fit in 128 bytes share a pass
        for word in range(offset // BANK_BYTES, (offset + size - 1) // BANK_BYTES + 1):
            words[group, word % BANKS].add(word)
    degree: dict[int, int] = defaultdict(int)  # pass group -> passes it takes
    for (group, _bank), asked in words.items():
        degree[group] = max(degree[group], len(asked))
    return sum(degree.values()), max(degree.values())


# `   115: 00000000000020c0  8192 TLS     LOCAL  DEFAULT   18 gemm_blocked<float>(float const*, ...)::tile_a`
_TLS_SYMBOL = re.compile(r"^\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+TLS\s+\S+\s+\S+\s+\S+\s+(.+)$", re.M)


def shared_arrays(library: Path) -> list[tuple[int, int, str]]:
    """The kernels' static ``__shared__`` arrays of a built module: ``(start, end, name)`` in the byte
    offsets of the record, e.g. ``(8384, 16576, "'tile_a' in gemm_blocked<float>")``.

    Each is a thread-local variable (cuda_sim.h), whose symbol holds its offset in the thread-local block,
    where the record's shared offsets count from; the redzones of a checked build and the runtime's own
    variables are left out; an ``extern __shared__`` array is named without a kernel. Empty without
    ``readelf``."""
    readelf = shutil.which("readelf")
    if readelf is None:
        return []
    table = subprocess.run([readelf, "-sW", "-C", str(library)], capture_output=True, text=True).stdout
    arrays = []
    for start, size, symbol in _TLS_SYMBOL.findall(table):
        if "sim_rt::" in symbol or "sim_shared_redzone_" in symbol or symbol.startswith("guard variable"):
            continue
        function, _, variable = symbol.rpartition("::")  # none for a file-scope array (extern __shared__)
        name = f"'{variable}' in {function.split('(')[0]}" if function else f"'{variable}'"
        arrays.append((int(start, 16), int(start, 16) + int(size), name))
    return sorted(arrays)
