"""What a kernel exercise's kernel does, counted: per output element, its global loads and stores, its
shared-memory accesses, its barriers, and the bank conflicts of its warps' shared-memory accesses.

Without a GPU a kernel cannot be timed, but the simulator's access record (``checks="record"``, see
:mod:`scratchnet.sim.record`) sees every access a kernel's source makes, and those counts are what make a
kernel fast or slow on a GPU: global memory is far slower than shared memory, shared memory slower than
registers (a warp shuffle), and a barrier stalls a whole block. A lesson cell compares two kernels::

    from scratchnet.exercises.kernel_counts import count, print_counts
    shuffle = count("warp_reduce", sizes={"N": 8, "K": 256})   # the solution of exercise 7
    tree = count("softmax_rows", sizes={"N": 8, "K": 256})     # exercise 5's shared-memory tree
    print_counts(shuffle, tree)

``count(exercise, source=None, sizes=None)`` runs the exercise's first kernel (the solution when ``source``
is None, else the learner's source) with the exercise's inputs, grid and block, checks its result against
the exercise's reference, and returns a :class:`KernelCounts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchnet.exercises.kernel_checker import EXERCISE_DIR, KernelExercise, exercise_for, recorded_launch

# The columns print_counts shows, in order: (key of KernelCounts.per_output(), heading).
COLUMNS = (
    ("global_loads", "global loads"),
    ("global_stores", "global stores"),
    ("shared_accesses", "shared accesses"),
    ("barriers", "barriers"),
    ("conflicts_per_warp_access", "bank conflicts / warp access"),
)


@dataclass(frozen=True)
class KernelCounts:
    """One launch of one kernel, counted from the simulator's access record."""

    kernel: str
    sizes: dict[str, int]
    output_elements: int
    counts: dict[str, int]  # AccessRecord.counts(): global_loads, global_stores, shared_loads, ...
    warp_accesses: int  # the warps' shared-memory accesses (one instruction run by the lanes of one warp)
    wavefronts: int  # the passes of the shared memory they take: warp_accesses when conflict-free
    worst_conflict: int  # the most words one bank delivers in one pass (1: conflict-free; 0: no access)

    def per_output(self) -> dict[str, float]:
        """The counts per output element; bank conflicts as the extra passes per warp access."""
        per = {name: self.counts[name] / self.output_elements for name in ("global_loads", "global_stores")}
        shared = self.counts["shared_loads"] + self.counts["shared_stores"]
        per["shared_accesses"] = shared / self.output_elements
        per["barriers"] = self.counts["barriers"] / self.output_elements
        extra = self.wavefronts - self.warp_accesses
        per["conflicts_per_warp_access"] = extra / self.warp_accesses if self.warp_accesses else 0.0
        return per


def _solution(exercise: KernelExercise) -> str:
    (path,) = sorted((EXERCISE_DIR / "solutions").glob(f"[0-9][0-9]_{exercise.name}.cu"))
    return path.read_text()


def count(exercise: str, source: str | None = None, sizes: dict[str, int] | None = None) -> KernelCounts:
    """Run the first kernel of ``exercise`` (by name, e.g. ``"warp_reduce"``) once on the simulator with
    the access record on, and count. ``source``: the kernel source (default: the exercise's solution);
    ``sizes``: e.g. ``{"N": 8, "K": 256}`` (default: the exercise's first shape)."""
    chosen = exercise_for(exercise)
    task = chosen.tasks[0]
    sizes = dict(chosen.shapes[0].sizes if sizes is None else sizes)
    missing = [name for name in chosen.shapes[0].sizes if name not in sizes]
    if missing:
        raise ValueError(f"{task.kernel} needs the sizes {', '.join(missing)}; got {sizes}")
    module, inputs, outputs = recorded_launch(
        task, _solution(chosen) if source is None else source, sizes, filename=f"{chosen.name}.cu"
    )
    for name, expected in task.reference(inputs, sizes).items():
        if not np.allclose(outputs[name], expected, rtol=1e-4, atol=1e-5):
            raise ValueError(
                f"{task.kernel} computes a wrong '{name}' for {sizes}: counting a wrong kernel says nothing; "
                f"check it first (python -m scratchnet.gradcheck FILE.cu)"
            )
    record = module.last_record
    sites = record.shared_sites(module.build.library)
    return KernelCounts(
        kernel=task.kernel,
        sizes=sizes,
        output_elements=sum(int(np.prod(shape)) for shape in task.output_shapes(sizes).values()),
        counts=record.counts(),
        warp_accesses=sum(site.warp_accesses for site in sites),
        wavefronts=sum(site.wavefronts for site in sites),
        worst_conflict=max((site.conflict_degree for site in sites), default=0),
    )


def format_counts(*kernels: KernelCounts) -> str:
    """A table, one row per kernel: the counts per output element (see :data:`COLUMNS`)."""
    name_width = max(len("kernel"), *(len(k.kernel) for k in kernels))
    header = f"{'kernel':<{name_width}}  " + "  ".join(heading for _, heading in COLUMNS)
    lines = ["per output element:", header]
    for k in kernels:
        per = k.per_output()
        cells = "  ".join(f"{per[key]:>{len(heading)}.3g}" for key, heading in COLUMNS)
        lines.append(f"{k.kernel:<{name_width}}  {cells}")
    lines.append("sizes: " + "; ".join(f"{k.kernel} {k.sizes}, {k.output_elements} outputs" for k in kernels))
    return "\n".join(lines)


def print_counts(*kernels: KernelCounts) -> None:
    """Print :func:`format_counts`'s table."""
    print(format_counts(*kernels))
