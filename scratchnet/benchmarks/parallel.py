"""Parallel speed: the data-parallel training step, and the data loader's worker processes.

``python -m scratchnet.bench parallel``: the data-parallel LeNet-5 training step against PyTorch.

Every measurement runs in a fresh process (or ``mpiexec`` ranks), one after the other, round after round:
PyTorch with its default threads, scratchnet on one process, scratchnet on ``--processes`` ranks. Nothing
else shares the machine with a measurement, so neither library's spinning worker threads slow the other,
and each figure is the median over the rounds. The steps are the same: LeNet-5, float32, SGD with momentum
on one fixed random batch of the global batch size (each rank takes its shard of it).

Each line of the table gives images per second, the ratio to PyTorch, and for the parallel runs the share of
a step spent in the gradient allreduce (the communication cost).

``python -m scratchnet.bench loader``: images per second that the DataLoader serves from an image folder
(the ImageNet layout, decoded by Pillow, random-resized crops at 224 px) with 0, 1, 2... worker processes.
Without ``--data-dir`` it writes a folder of synthetic JPEG photos-sized images first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

SCRATCHNET, TORCH = "scratchnet", "torch"
LR, MOMENTUM = 0.01, 0.9

# The variables that set NumPy's BLAS threads (OpenBLAS, OpenMP, MKL), read when a process starts.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _lenet_and_batch(batch: int, seed: int = 0):
    import scratchnet as sn

    model = sn.models.LeNet5(seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)  # (B, 1, 28, 28)
    labels = rng.integers(0, 10, batch)  # (B,)
    return model, x, labels


def measure_scratchnet(batch: int, steps: int, warmup: int) -> dict | None:
    """Time ``steps`` data-parallel steps on this process's world; rank 0 returns the figures."""
    from scratchnet import optim, parallel
    from scratchnet.layers import SoftmaxCrossEntropy

    world = parallel.world()
    limiter = parallel.limit_blas_threads(world)  # noqa: F841 - the limit lasts while it is referenced
    model, x_host, labels_host = _lenet_and_batch(batch)
    shard = world.shard(batch)
    x, labels = model.device.array(x_host[shard]), model.device.array(labels_host[shard])
    loss = SoftmaxCrossEntropy()
    optimizer = optim.SGD(model, lr=LR, momentum=MOMENTUM)
    allreduce = parallel.GradientAllreduce(model, world)
    communication = 0.0

    def step() -> float:
        logits = model.forward(x, training=True)  # (B / N, 10)
        loss.forward(logits, labels)
        model.backward(loss.backward())
        start = time.perf_counter()
        allreduce(len(labels), batch)
        spent = time.perf_counter() - start
        optimizer.step()
        return spent

    for _ in range(warmup):
        step()
    world.sum([0.0])  # a barrier: every rank starts timing together
    start = time.perf_counter()
    for _ in range(steps):
        communication += step()
    seconds = float(world.sum([time.perf_counter() - start])[0]) / world.size
    if not world.is_root:
        return None
    from threadpoolctl import threadpool_info

    return {
        "images_per_second": batch * steps / seconds,
        "communication_share": communication / seconds,
        "processes": world.size,
        "blas_threads_seen": max((pool["num_threads"] for pool in threadpool_info()), default=None),
    }


def measure_torch(batch: int, steps: int, warmup: int) -> dict:
    import torch

    from scratchnet.benchmarks.torch_twins import torch_model

    model, x_host, labels_host = _lenet_and_batch(batch)
    net = torch_model(model, torch).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    x, labels = torch.from_numpy(x_host), torch.from_numpy(labels_host)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), labels).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {"images_per_second": batch * steps / (time.perf_counter() - start), "processes": 1}


def measure(
    library: str,
    processes: int,
    batch: int,
    steps: int = 10,
    warmup: int = 2,
    blas_threads: int | None = None,
) -> dict:
    """Images per second of ``steps`` training steps of LeNet-5 at global ``batch``, measured in fresh
    processes (``processes`` > 1: under mpiexec); returns rank 0's figures. ``blas_threads`` gives every
    process that many BLAS threads, a lone one included, so that 1 and N processes compare like with like
    (None: the environment's setting)."""
    from scratchnet import parallel

    command = [sys.executable, "-m", "scratchnet.benchmarks.parallel", "_measure", library]
    command += [str(batch), str(steps), str(warmup)]
    if processes > 1:
        command = [parallel.mpiexec(), "-n", str(processes), *command]
    env = dict(os.environ)
    if blas_threads is not None:
        env.update({name: str(blas_threads) for name in BLAS_THREAD_VARIABLES})
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "blas_threads": blas_threads}


def run_table(batches: list[int], processes: int, rounds: int, steps: int, warmup: int) -> list[dict]:
    configs = [(TORCH, 1), (SCRATCHNET, 1), (SCRATCHNET, processes)]
    figures: dict[tuple, list[dict]] = {}
    for _ in range(rounds):
        for batch in batches:
            for library, n in configs:
                figures.setdefault((batch, library, n), []).append(measure(library, n, batch, steps, warmup))
    rows = []
    for batch in batches:
        torch_rate = statistics.median(f["images_per_second"] for f in figures[(batch, TORCH, 1)])
        for library, n in configs:
            runs = figures[(batch, library, n)]
            rate = statistics.median(f["images_per_second"] for f in runs)
            share = [f["communication_share"] for f in runs if "communication_share" in f]
            rows.append(
                {
                    "batch": batch,
                    "library": library,
                    "processes": n,
                    "images_per_second": rate,
                    "vs_torch": rate / torch_rate,
                    "communication_share": statistics.median(share) if n > 1 else None,
                }
            )
    return rows


def format_table(rows: list[dict], command: str) -> str:
    lines = [
        f"# {command}",
        "LeNet-5 training step, float32, global batch; median over rounds, each run in its own process(es)",
        f"{'batch':>5}  {'library':<10} {'processes':>9}  {'images/s':>9}  {'vs torch':>8}  {'allreduce':>9}",
    ]
    for r in rows:
        share = f"{100 * r['communication_share']:8.1f}%" if r["communication_share"] is not None else ""
        lines.append(
            f"{r['batch']:>5}  {r['library']:<10} {r['processes']:>9}  {r['images_per_second']:9.0f}  "
            f"{r['vs_torch']:7.2f}x  {share:>9}"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scratchnet.bench parallel", description=__doc__.split("\n")[0]
    )
    p.add_argument("--processes", type=int, default=2, help="ranks of the data-parallel run (default 2)")
    p.add_argument("--batch-sizes", default="64,128,256", help="global batch sizes, comma-separated")
    p.add_argument("--rounds", type=int, default=5, help="measurements per figure (median)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--json", action="store_true")
    return p


# --- the data loader ------------------------------------------------------------------------------------
def synthetic_image_folder(root, images: int = 256, classes: int = 4, size=(500, 375), seed: int = 0):
    """``root/train/<class>/*.jpg``: smooth random colour images of ``size`` (JPEG, quality 90)."""
    from pathlib import Path

    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(images):
        folder = Path(root) / "train" / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (size[1] // 25, size[0] // 25, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize(size, Image.BILINEAR).save(folder / f"{i}.jpg", quality=90)
    return Path(root)


def measure_loader(data_dir, workers: list[int], batch: int, image_size: int, epochs: int) -> list[dict]:
    import scratchnet.data as D

    dataset = D.load_dataset("folder", data_dir=data_dir, image_size=image_size, crop="random-resized")
    rows = []
    for k in workers:
        loader = D.DataLoader(dataset, batch, shuffle=True, seed=0, workers=k)
        start = time.perf_counter()
        served = 0
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            served += sum(len(labels) for _, labels in loader)
        rows.append({"workers": k, "images_per_second": served / (time.perf_counter() - start)})
    return rows


def loader_main(argv: list[str]) -> int:
    import tempfile

    p = argparse.ArgumentParser(prog="python -m scratchnet.bench loader", description="DataLoader workers")
    p.add_argument("--data-dir", help="an image folder (root/train/<class>/...); default: synthetic JPEGs")
    p.add_argument("--workers", default="0,1,2", help="worker counts to measure, comma-separated")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    try:
        workers = [int(k) for k in args.workers.split(",")]
    except ValueError:
        p.error(f"--workers must be comma-separated integers, got {args.workers!r}")
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data_dir or synthetic_image_folder(scratch)
        rows = measure_loader(data_dir, workers, args.batch_size, args.image_size, args.epochs)
    print(f"# python -m scratchnet.bench loader {' '.join(argv)}")
    print(
        f"image folder {args.data_dir or 'synthetic: 256 JPEGs of 500x375'}, random-resized crops to "
        f"{args.image_size} px, batch {args.batch_size}, {args.epochs} epochs"
    )
    print(f"{'workers':>7}  {'images/s':>9}")
    for r in rows:
        print(f"{r['workers']:>7}  {r['images_per_second']:9.0f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_measure":  # inside one measurement's process (or rank)
        library, batch, steps, warmup = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
        measure = measure_torch if library == TORCH else measure_scratchnet
        result = measure(batch, steps, warmup)
        if result is not None:
            print(json.dumps(result))
        return 0
    if argv and argv[0] == "loader":
        return loader_main(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    try:
        batches = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    if args.processes < 2 or min(batches) < 1 or args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        p.error("need --processes >= 2, batch sizes >= 1, --rounds >= 1, --steps >= 1, --warmup >= 0")
    rows = run_table(batches, args.processes, args.rounds, args.steps, args.warmup)
    command = "python -m scratchnet.bench parallel " + " ".join(argv)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
