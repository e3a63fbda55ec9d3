"""Parallel speed: the data-parallel training step, and the data loader's worker processes.

``python -m scratchnet.bench parallel``: the data-parallel LeNet-5 training step against PyTorch.

Every measurement runs in a fresh process (or ``mpiexec`` ranks), one after the other, round after round:
PyTorch with its default threads, scratchnet on one process, scratchnet on ``--processes`` ranks. Nothing
else shares the machine with a measurement, so neither library's spinning worker threads slow the other,
and each figure is the median over the rounds. The steps are the same: LeNet-5, float32, SGD with momentum
on one fixed random batch of the global batch size (each rank takes its shard of it).

Each line of the table gives images per second, the ratio to PyTorch, and for the parallel runs the share of
a step spent in the gradient allreduce (the communication cost).

``python -m scratchnet.bench models``: every model's training step at the batch sizes of the performance
page, against PyTorch, each library in its own process, alternating, round after round: the step time,
the model's ceiling (its matrix products alone, :func:`gemm_shapes`, with NumPy's matmul) and the peak
growth of the resident set from before the first step (``/proc/self/clear_refs`` resets the kernel's
high-water mark VmHWM there; tracemalloc would not see PyTorch's allocations).

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

from scratchnet._memory import keep_freed_memory

SCRATCHNET, TORCH, GEMMS = "scratchnet", "torch", "gemms"
LR, MOMENTUM = 0.01, 0.9

# The variables that set NumPy's BLAS threads (OpenBLAS, OpenMP, MKL), read when a process starts.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _model_and_batch(model_name: str, batch: int, seed: int = 0):
    """The model, a fixed random batch x (B, C, H, W) and its labels (B,)."""
    from scratchnet import models

    model = models.build(model_name, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)  # (B, C, H, W)
    classes = model.output_shapes()[list(model.layers)[-1]][-1]
    labels = rng.integers(0, classes, batch)  # (B,)
    return model, x, labels


# --- peak memory: the resident set's high-water mark, reset before the first step (Linux) -----------------
def _status_kib(field: str) -> int | None:
    """``VmRSS`` or ``VmHWM`` of this process from /proc/self/status, in KiB (None where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> int | None:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS by writing 5 to
    /proc/self/clear_refs; returns that RSS in KiB, or None where the counter cannot be reset. Unlike
    tracemalloc, this sees every allocation, PyTorch's included."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


def peak_rss_growth_bytes(start_kib: int | None) -> int | None:
    """How far the resident set rose above ``start_kib`` (from :func:`reset_peak_rss`) at its peak."""
    peak = _status_kib("VmHWM")
    return None if start_kib is None or peak is None else max(0, peak - start_kib) * 1024


def _timed_steps(step, steps: int, warmup: int) -> tuple[list[float], int | None]:
    """Seconds of each of ``steps`` calls of ``step`` after ``warmup`` untimed ones, and the peak RSS
    growth from before the first call (see :func:`measure_scratchnet`)."""
    start_kib = reset_peak_rss()
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds, peak_rss_growth_bytes(start_kib)


def measure_scratchnet(batch: int, steps: int, warmup: int, model_name: str = "lenet5") -> dict | None:
    """Time ``steps`` data-parallel steps on this process's world; rank 0 returns the figures."""
    from scratchnet import optim, parallel
    from scratchnet.layers import SoftmaxCrossEntropy

    world = parallel.world()
    limiter = parallel.limit_blas_threads(world)  # noqa: F841 - the limit lasts while it is referenced
    model, x_host, labels_host = _model_and_batch(model_name, batch)
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

    # Peak memory: the resident set's growth from before the first step (the warm-up's included) to its
    # peak: what training needs beyond the model, its gradients' first zeros and the batch (the momentum,
    # the activations kept for the backward, the workspaces, the temporaries), however the allocator
    # keeps or returns memory between steps.
    start_kib = reset_peak_rss()
    for _ in range(warmup):
        step()
    world.sum([0.0])  # a barrier: every rank starts timing together
    start = time.perf_counter()
    step_seconds = []
    for _ in range(steps):
        step_start = time.perf_counter()
        communication += step()
        step_seconds.append(time.perf_counter() - step_start)
    seconds = float(world.sum([time.perf_counter() - start])[0]) / world.size
    growth = peak_rss_growth_bytes(start_kib)
    if not world.is_root:
        return None
    from threadpoolctl import threadpool_info

    return {
        "images_per_second": batch * steps / seconds,
        "step_seconds": statistics.median(step_seconds),
        "communication_share": communication / seconds,
        "processes": world.size,
        "peak_rss_growth_bytes": growth,  # rank 0's
        "blas_threads_seen": max((pool["num_threads"] for pool in threadpool_info()), default=None),
    }


def measure_torch(batch: int, steps: int, warmup: int, model_name: str = "lenet5") -> dict:
    import torch

    from scratchnet.benchmarks.torch_twins import torch_model

    model, x_host, labels_host = _model_and_batch(model_name, batch)
    net = torch_model(model, torch).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    x, labels = torch.from_numpy(x_host), torch.from_numpy(labels_host)
    for p in net.parameters():  # gradients that exist before the first step, as a scratchnet layer's do
        p.grad = torch.zeros_like(p)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), labels).backward()
        optimizer.step()

    seconds, growth = _timed_steps(step, steps, warmup)
    return {
        "images_per_second": batch * steps / sum(seconds),
        "step_seconds": statistics.median(seconds),
        "processes": 1,
        "peak_rss_growth_bytes": growth,
        "threads": torch.get_num_threads(),
    }


def measure_gemms(batch: int, steps: int, warmup: int, model_name: str = "lenet5") -> dict:
    """The model's ceiling: the matrix products of one training step (:func:`gemm_shapes`) and nothing
    else, with NumPy's matmul into preallocated outputs; the median seconds over ``steps`` repetitions."""
    model, _, _ = _model_and_batch(model_name, batch)
    rng = np.random.default_rng(0)
    products = []
    for count, (rows, inner, columns) in gemm_shapes(model, batch):
        a = rng.standard_normal((count, rows, inner), dtype=np.float32)
        b = rng.standard_normal((count, inner, columns), dtype=np.float32)
        products.append((a, b, np.empty((count, rows, columns), np.float32)))

    def step() -> None:
        for a, b, out in products:
            np.matmul(a, b, out=out)

    seconds, _ = _timed_steps(step, steps, warmup)
    flops = sum(2 * a.size * b.shape[-1] for a, b, _ in products)
    return {"step_seconds": statistics.median(seconds), "gflops": flops / statistics.median(seconds) / 1e9}


def gemm_shapes(model, batch: int) -> list[tuple[int, tuple[int, int, int]]]:
    """The matrix products of one training step of ``model`` at ``batch``, each as (G, (rows, inner,
    columns)): G products of (rows, inner) @ (inner, columns). Per convolution (im2col, Cg·KH·KW = R rows
    of columns, N·OH·OW = Q columns): the forward (Fg, R) @ (R, Q), the weight gradient (Fg, Q) @ (Q, R) and,
    unless the layer skips it, the input gradient (R, Fg) @ (Fg, Q); per Linear x (N, D), weight (D, M):
    (N, D) @ (D, M), (D, N) @ (N, M) and (N, M) @ (M, D). Each as one product over the whole batch: the
    least overhead any implementation could have."""
    from scratchnet.benchmarks.speed import _leaf_layers
    from scratchnet.layers import Conv2D, Linear

    products = []
    shape = (batch, *model.input_shape)
    for layer in _leaf_layers(model.layers):
        if isinstance(layer, Conv2D):
            N, C, _, _ = shape
            _, F, OH, OW = layer.output_shape(shape)
            G, (KH, KW) = layer.groups, layer.kernel_size
            R, Q, Fg = C // G * KH * KW, N * OH * OW, F // G
            products += [(G, (Fg, R, Q)), (G, (Fg, Q, R))]
            if layer.needs_input_grad:
                products.append((G, (R, Fg, Q)))
        elif isinstance(layer, Linear):
            (N, D), M = shape, layer.output_shape(shape)[1]
            products += [(1, (N, D, M)), (1, (D, N, M)), (1, (N, M, D))]
        shape = tuple(layer.output_shape(shape))
    return products


def measure(
    library: str,
    processes: int,
    batch: int,
    steps: int = 10,
    warmup: int = 2,
    blas_threads: int | None = None,
    model: str = "lenet5",
) -> dict:
    """Images per second of ``steps`` training steps of ``model`` at global ``batch``, measured in fresh
    processes (``processes`` > 1: under mpiexec); returns rank 0's figures. ``library`` "gemms" times the
    model's matrix products alone (:func:`measure_gemms`). ``blas_threads`` gives every process that many
    BLAS threads, a lone one included, so that 1 and N processes compare like with like (None: the
    environment's setting)."""
    from scratchnet import parallel

    command = [sys.executable, "-m", "scratchnet.benchmarks.parallel", "_measure", library]
    command += [str(batch), str(steps), str(warmup), model]
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


def format_table(rows: list[dict], command: str, load=None, started: str = "") -> str:
    lines = [
        f"# {command}",
        *_conditions(load, started),
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


def started_now() -> tuple[tuple[float, float, float], str]:
    """The load average and the date when a measurement starts, for its header."""
    return os.getloadavg(), time.strftime("%Y-%m-%d %H:%M %Z")


def _conditions(load, started: str) -> list[str]:
    """The machine, the start date, the load average at the start and, above half the cores, the warning."""
    from scratchnet.benchmarks.speed import _cpu_name, _load_text, load_warning

    cpus = os.cpu_count()
    lines = [f"# {_cpu_name()}, {cpus} logical CPUs, started {started}; load average {_load_text(load)}"]
    warning = load_warning(load, cpus)
    return lines + ([f"# {warning}"] if warning else [])


# --- every model next to PyTorch ----------------------------------------------------------------------
# The models and batch sizes of docs/performance.md: LeNet-5 at three batch sizes, the CIFAR nets at 128.
MODEL_RUNS = (
    ("lenet5", 64),
    ("lenet5", 128),
    ("lenet5", 256),
    ("alexnet-cifar", 128),
    ("vgg-cifar", 128),
    ("plain20-cifar", 128),
    ("resnet20-cifar", 128),
)


def run_models_table(
    runs, rounds: int, steps: int, warmup: int, processes: int = 1, blas_threads: int | None = None
) -> list[dict]:
    """One row per (model, batch) of ``runs``: the median over ``rounds`` of each process's median step,
    for PyTorch, scratchnet, scratchnet on ``processes`` ranks (when > 1) and the GEMM ceiling; each round
    measures every configuration once, one after the other, each in a fresh process."""
    configs = [(TORCH, 1), (SCRATCHNET, 1), (GEMMS, 1)] + ([(SCRATCHNET, processes)] if processes > 1 else [])
    figures: dict[tuple, list[dict]] = {}
    for _ in range(rounds):
        for model, batch in runs:
            for library, n in configs:
                figure = measure(library, n, batch, steps, warmup, blas_threads, model)
                figures.setdefault((model, batch, library, n), []).append(figure)

    def median(model, batch, library, n, key):
        values = [f[key] for f in figures[(model, batch, library, n)]]
        return None if None in values else statistics.median(values)

    rows = []
    for model, batch in runs:
        ours, theirs = (
            median(model, batch, SCRATCHNET, 1, "step_seconds"),
            median(model, batch, TORCH, 1, "step_seconds"),
        )
        ceiling = median(model, batch, GEMMS, 1, "step_seconds")
        our_rss = median(model, batch, SCRATCHNET, 1, "peak_rss_growth_bytes")
        their_rss = median(model, batch, TORCH, 1, "peak_rss_growth_bytes")
        row = {
            "model": model,
            "batch": batch,
            "step_seconds": ours,
            "torch_step_seconds": theirs,
            "vs_torch": theirs / ours,
            "gemm_seconds": ceiling,
            "vs_gemm_ceiling": ours / ceiling,
            "peak_rss_growth_bytes": our_rss,
            "torch_peak_rss_growth_bytes": their_rss,
            "rss_vs_torch": None if not (our_rss and their_rss) else our_rss / their_rss,
            "blas_threads": figures[(model, batch, SCRATCHNET, 1)][0]["blas_threads_seen"],
            "torch_threads": figures[(model, batch, TORCH, 1)][0]["threads"],
        }
        if processes > 1:
            parallel_step = median(model, batch, SCRATCHNET, processes, "step_seconds")
            row.update(
                processes=processes,
                parallel_step_seconds=parallel_step,
                parallel_vs_torch=theirs / parallel_step,
            )
        rows.append(row)
    return rows


def format_models_table(rows: list[dict], command: str, load=None, started: str = "") -> str:
    threads = sorted({(r["blas_threads"], r["torch_threads"]) for r in rows})
    lines = [
        f"# {command}",
        *_conditions(load, started),
        "# threads (NumPy BLAS, PyTorch): " + ", ".join(f"{a}, {b}" for a, b in threads),
        "training step, float32, synthetic batch; median over rounds of each process's median step; each",
        "library in its own process. vs torch = torch ms / ms; vs GEMMs = ms / GEMM ms (the ceiling: the",
        "step's matrix products alone); RSS = peak growth of the resident set from before the first",
        "step (MiB)",
    ]
    parallel = rows and "processes" in rows[0]
    header = (
        f"{'model':<15} {'batch':>5}  {'ms':>8}  {'torch ms':>8}  {'vs torch':>8}  {'GEMM ms':>8}  "
        f"{'vs GEMMs':>8}  {'RSS':>6}  {'torch RSS':>9}  {'RSS ratio':>9}"
    )
    if parallel:
        header += f"  {str(rows[0]['processes']) + ' proc ms':>10}  {'vs torch':>8}"
    lines += [header, "-" * len(header)]

    def mib(value):
        return "" if value is None else f"{value / 2**20:.0f}"

    for r in rows:
        ratio = "" if r["rss_vs_torch"] is None else f"{r['rss_vs_torch']:.2f}x"
        line = (
            f"{r['model']:<15} {r['batch']:>5}  {1e3 * r['step_seconds']:8.1f}  "
            f"{1e3 * r['torch_step_seconds']:8.1f}  {r['vs_torch']:7.2f}x  {1e3 * r['gemm_seconds']:8.1f}  "
            f"{r['vs_gemm_ceiling']:7.2f}x  {mib(r['peak_rss_growth_bytes']):>6}  "
            f"{mib(r['torch_peak_rss_growth_bytes']):>9}  {ratio:>9}"
        )
        if parallel:
            line += f"  {1e3 * r['parallel_step_seconds']:10.1f}  {r['parallel_vs_torch']:7.2f}x"
        lines.append(line)
    return "\n".join(lines)


def _model_runs(text: str) -> list[tuple[str, int]]:
    """``"lenet5:64,resnet20-cifar:128"`` -> [("lenet5", 64), ("resnet20-cifar", 128)]."""
    from scratchnet import models

    runs = []
    for item in text.split(","):
        model, _, batch = item.strip().partition(":")
        if model not in models.MODELS or not batch.isdigit() or int(batch) < 1:
            raise argparse.ArgumentTypeError(
                f"each run is MODEL:BATCH with MODEL one of {', '.join(models.MODELS)} and BATCH a positive "
                f"integer, got {item!r}"
            )
        runs.append((model, int(batch)))
    return runs


def models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scratchnet.bench models",
        description="Every model's training step against PyTorch, its GEMM ceiling and peak memory growth",
    )
    default = ",".join(f"{m}:{b}" for m, b in MODEL_RUNS)
    p.add_argument(
        "--runs", type=_model_runs, default=list(MODEL_RUNS), help=f"MODEL:BATCH,... (default {default})"
    )
    p.add_argument("--rounds", type=int, default=5, help="measurements per figure (median)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--processes", type=int, default=1, help="also time scratchnet on this many ranks (> 1)")
    p.add_argument(
        "--threads", type=int, help="BLAS and PyTorch threads of every process (default: the environment's)"
    )
    p.add_argument("--json", action="store_true")
    return p


def models_main(argv: list[str]) -> int:
    p = models_parser()
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0 or args.processes < 1:
        p.error("need --rounds >= 1, --steps >= 1, --warmup >= 0, --processes >= 1")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    load, started = started_now()
    rows = run_models_table(args.runs, args.rounds, args.steps, args.warmup, args.processes, args.threads)
    command = "python -m scratchnet.bench models " + " ".join(argv)
    print(
        json.dumps({"load_average": load, "rows": rows}, indent=2)
        if args.json
        else format_models_table(rows, command, load, started)
    )
    return 0


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
        keep_freed_memory()  # as the trainer does; for PyTorch's processes too, so both run alike
        library, batch, steps, warmup, model = argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5]
        measure = {TORCH: measure_torch, GEMMS: measure_gemms, SCRATCHNET: measure_scratchnet}[library]
        result = measure(batch, steps, warmup, model)
        if result is not None:
            print(json.dumps(result))
        return 0
    if argv and argv[0] == "loader":
        return loader_main(argv[1:])
    if argv and argv[0] == "models":
        return models_main(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    try:
        batches = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    if args.processes < 2 or min(batches) < 1 or args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        p.error("need --processes >= 2, batch sizes >= 1, --rounds >= 1, --steps >= 1, --warmup >= 0")
    load, started = started_now()
    rows = run_table(batches, args.processes, args.rounds, args.steps, args.warmup)
    command = "python -m scratchnet.bench parallel " + " ".join(argv)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, command, load, started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
