"""The access record: every load, store and atomic of a launch, for counting what a kernel does.

Load a module with ``checks="record"`` (alone, or with checks: ``"all,record"``); after each launch,
``module.last_record`` is an :class:`AccessRecord` of that launch::

    module = sim.load_module(source, checks="record")
    module.get_function("transpose")((4, 4), (16, 16), (x, y, np.int32(64)))
    module.last_record.counts()         # {'global_loads': 4096, 'global_stores': 4096, 'shared_loads': ...}
    module.last_record.bank_conflicts() # extra shared-memory transactions the warps' accesses would cost

It is made in a checked build (every access calls the runtime, see :mod:`.checks`), so it sees what the
kernel's source does, constant offsets and both halves of ``x += ...`` included; accesses to the thread's
own stack and to ``__constant__`` memory are not in it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

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
        executions: dict[tuple[int, int, int], int] = defaultdict(int)  # (block, thread, pc) -> times so far
        groups: dict[tuple[int, int, int, int], list[tuple[int, int]]] = defaultdict(list)
        for event in self.events[self.events["buffer"] == SHARED]:
            block, thread, pc = int(event["block"]), int(event["thread"]), int(event["pc"])
            n = executions[block, thread, pc]
            executions[block, thread, pc] = n + 1
            groups[block, thread // 32, pc, n].append((int(event["offset"]), int(event["size"])))
        return dict(groups)

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
