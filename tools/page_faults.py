"""Page faults per training step, with glibc's default malloc and with freed memory kept (``_memory.py``).

    python tools/page_faults.py --model lenet5 --batch 64 --rounds 5

Each measurement runs in a fresh process (malloc's settings last as long as the process), alternating the
two settings round after round: the median step time and the minor page faults per step (``getrusage``)
over ``--steps`` timed steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def measure(model_name: str, batch: int, steps: int, keep: bool) -> dict:
    """In this process: a training step's median time and its page faults."""
    import resource

    import numpy as np

    from scratchnet import models, optim
    from scratchnet._memory import keep_freed_memory
    from scratchnet.layers import SoftmaxCrossEntropy

    if keep:
        assert keep_freed_memory()
    model = models.build(model_name, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)  # (B, C, H, W)
    labels = rng.integers(0, 10, batch)
    loss, optimizer = SoftmaxCrossEntropy(), optim.SGD(model, lr=0.01, momentum=0.9)

    def step():
        logits = model.forward(x, training=True)
        loss.forward(logits, labels)
        model.backward(loss.backward())
        optimizer.step()

    for _ in range(2):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {
        "step_ms": 1e3 * statistics.median(seconds),
        "faults_per_step": faults / steps,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lenet5")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--_measure", choices=("default", "kept"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._measure:
        print(json.dumps(measure(args.model, args.batch, args.steps, args._measure == "kept")))
        return 0
    print(f"# {' '.join(['python', *sys.argv])}")
    print(f"# load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    runs: dict[str, list[dict]] = {"default": [], "kept": []}
    for _ in range(args.rounds):
        for setting, figures in runs.items():
            command = [sys.executable, __file__, "--model", args.model, "--batch", str(args.batch)]
            command += ["--steps", str(args.steps), "--_measure", setting]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            figures.append(json.loads(done.stdout))
    print(f"{args.model}, batch {args.batch}: medians over {args.rounds} processes of each setting")
    print(f"{'malloc':<8} {'step ms':>8} {'faults/step':>12}")
    for setting, figures in runs.items():
        median = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
        print(f"{setting:<8} {median['step_ms']:8.2f} {median['faults_per_step']:12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
