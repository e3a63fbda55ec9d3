"""Benchmarks: how fast scratchnet is, layer by layer and for a whole training step, next to PyTorch.

::

    python -m scratchnet.bench                                   # LeNet-5, batches 64, 128, 256, on cpu
    python -m scratchnet.bench --model alexnet-cifar --batch-sizes 128 --repeats 10
    python -m scratchnet.bench --quick                           # tiny sizes, one repeat (a smoke test)
    python -m scratchnet.bench --json > bench.json               # machine-readable, for tracking
    python -m scratchnet.bench time-to-accuracy --target 0.90    # train LeNet-5 on Fashion-MNIST, timed
    python -m scratchnet.bench kernels gemm                      # the CUDA kernel harness (kernel_bench)

The table times, in one run, every layer of the model (forward and backward, at the shapes the layer sees
inside the model) and a full training step (forward, loss, backward, SGD with momentum 0.9), for each batch
size: scratchnet's fast implementation; its naive loop implementation of convolution and pooling (at the
smallest batch size only, one run, marked ``naive*``: it is slow on purpose); and, where PyTorch is
installed, the same computation in PyTorch (``torch.nn`` layers with the same weights). The speed ratio is
PyTorch's time divided by scratchnet's: 1.0 is as fast, 0.5 is half PyTorch's throughput.

Timing: the median of ``--repeats`` calls (``time.perf_counter``; on ``gpu`` each call ends with a device
synchronize), scratchnet's and PyTorch's calls in alternating blocks, each after an idle gap and a warm-up
call, so that load from other processes slows both alike (see :func:`time_calls`). The header names what
the numbers depend on: the BLAS library and thread counts of NumPy and PyTorch, and the ``OPENBLAS_*``
environment variables, which this command reports but never changes. (On some machines
``OPENBLAS_CORETYPE`` is set to an older core type than the processor's, which selects slower matrix
kernels; compare a run with ``env -u OPENBLAS_CORETYPE``.)

Memory: the peak of NumPy allocations during one training step, measured with ``tracemalloc`` (NumPy
reports its array buffers to it; PyTorch does not, so there is no PyTorch figure), and the process's peak
resident set size (``ru_maxrss``) at the end of the run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from scratchnet import models as M
from scratchnet import optim as O
from scratchnet._cuda.limits import cdiv
from scratchnet._memory import keep_freed_memory
from scratchnet.benchmarks.torch_twins import torch_model
from scratchnet.device import DEVICE_NAMES, Device, get_device
from scratchnet.errors import cli_errors
from scratchnet.layers import Conv2D, MaxPool2D, ResidualBlock, SoftmaxCrossEntropy

BENCH_MODELS = ("lenet5", "alexnet-cifar", "alexnet", "alexnet-torchvision", "resnet20-cifar")
LR, MOMENTUM = 0.01, 0.9  # the SGD of the timed training step (both libraries)


# --- what the numbers depend on -----------------------------------------------------------------------
def numpy_info() -> dict:
    """NumPy's version, BLAS library, and the threads and CPU core type OpenBLAS runs with."""
    info = {"version": np.__version__, "blas": "unknown", "threads": None, "blas_core": None, "source": None}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}".strip()
    except (KeyError, TypeError):  # an old NumPy or an unusual build: keep "unknown"
        pass
    try:
        import threadpoolctl
    except ImportError:
        info.update(_openblas_runtime())
        return info
    pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    if pools:
        info.update(
            threads=pools[0]["num_threads"], blas_core=pools[0].get("architecture"), source="threadpoolctl"
        )
    return info


def _openblas_runtime() -> dict:
    """Ask the OpenBLAS that NumPy loaded (found in /proc/self/maps, Linux) for its threads and core type.

    This is what threadpoolctl does; it answers nothing on other systems or other BLAS libraries.
    """
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return {}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            core = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            if threads is not None and core is not None:
                core.restype = ctypes.c_char_p
                return {"threads": threads(), "blas_core": core().decode(), "source": "OpenBLAS, via ctypes"}
    return {}


def torch_info(torch) -> dict:
    """PyTorch's version, thread counts and math libraries (from torch.__config__.parallel_info())."""
    libraries = [
        line.strip()
        for line in torch.__config__.parallel_info().splitlines()
        if any(word in line for word in ("Math Kernel Library", "MKL-DNN", "oneDNN", "OpenBLAS"))
    ]
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "blas": blas.group(1) if blas else "unknown",
        "libraries": libraries,
    }


def environment(torch) -> dict:
    variables = (
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
    )
    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {_cpu_name()}",
        "cpus": os.cpu_count(),
        # Other processes competing for the cores make every figure slower and noisier.
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ[k] for k in variables if k in os.environ},
        "numpy": numpy_info(),
        "torch": torch_info(torch) if torch is not None else None,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# --- timing -------------------------------------------------------------------------------------------
IDLE_GAP = 0.2  # seconds: longer than OpenBLAS's and OpenMP's worker threads spin after a call


def time_calls(calls: list[Callable], repeats: int, warmup: int = 1, rounds: int = 3) -> list[float]:
    """Median seconds per call of each function in ``calls``, timed in alternating blocks (a a a, b b b, ...).

    Alternating matters on a shared machine: a burst of load from another process slows every contender
    alike, so the ratio of two medians stays meaningful even when the absolute times are noisy. Blocks,
    not single calls, with an idle gap before each: after a call, both OpenBLAS (NumPy) and OpenMP
    (PyTorch) keep their worker threads spinning for up to ~0.1 s, and a function timed inside the other
    library's spin competes with those threads for the cores (on 2 cores this doubled the step times).
    """
    rounds = max(1, min(rounds, repeats))
    per_round = cdiv(repeats, rounds)
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for fn, spent in zip(calls, times, strict=True):
            if len(calls) > 1:
                time.sleep(IDLE_GAP)
            for _ in range(warmup):
                fn()
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


@dataclass
class Row:
    """One timed line of the table. ``seconds`` are medians; ``runs`` is how many calls were timed."""

    batch: int
    what: str  # "conv1 forward", "loss backward", "train step"
    impl: str  # "fast" or "naive"
    seconds: float
    runs: int
    torch_seconds: float | None = None

    @property
    def images_per_second(self) -> float:
        return self.batch / self.seconds

    @property
    def speed_vs_torch(self) -> float | None:
        """PyTorch's time / scratchnet's time: scratchnet's throughput as a fraction of PyTorch's."""
        return None if self.torch_seconds is None else self.torch_seconds / self.seconds

    def as_dict(self) -> dict:
        d = asdict(self)
        d["images_per_second"] = self.images_per_second
        d["torch_images_per_second"] = None if self.torch_seconds is None else self.batch / self.torch_seconds
        d["speed_vs_torch"] = self.speed_vs_torch
        return d


# --- the benchmark ------------------------------------------------------------------------------------
def naive_copy(model):
    """A copy of ``model`` whose convolutions and poolings use their naive loop implementation."""
    naive = copy.deepcopy(model)
    for layer in _leaf_layers(naive.layers):
        if isinstance(layer, Conv2D | MaxPool2D):
            layer.impl = "naive"
    return naive


def _leaf_layers(layers: dict):
    """The layers of ``layers``, with those inside residual blocks in place of the blocks."""
    for layer in layers.values():
        yield from _leaf_layers(layer.layers) if isinstance(layer, ResidualBlock) else (layer,)


class Bench:
    """Everything needed to time one model at one batch size on both libraries."""

    def __init__(self, model, batch: int, torch, torch_device: str, seed: int = 0):
        self.model, self.batch, self.torch, self.torch_device = model, batch, torch, torch_device
        self.device: Device = model.device
        rng = np.random.default_rng(seed)
        num_classes = model.output_shapes()[list(model.layers)[-1]][-1]
        self.x_host = rng.standard_normal((batch, *model.input_shape)).astype(model.dtype)  # (B, C, H, W)
        self.labels_host = rng.integers(0, num_classes, batch)  # (B,) int64
        self.loss = SoftmaxCrossEntropy(device=self.device, dtype=model.dtype)

    # -- scratchnet --
    def layer_calls(self, model, layers: set | None = None) -> dict[str, Callable]:
        """``{"conv1 forward": fn, "conv1 backward": fn, ..., "loss backward": fn}``: each layer's forward
        and backward on the input (and a random dy) it gets inside the model, then the loss; only the layers
        named in ``layers`` when given (and then no loss). Call each backward after its forward."""
        dev, calls = self.device, {}
        x = dev.array(self.x_host)
        rng = np.random.default_rng(1)
        for name, layer in model.layers.items():
            y = layer.forward(x, training=True)
            if layers is None or name in layers:
                dy = dev.array(rng.standard_normal(tuple(y.shape)).astype(model.dtype))
                calls[f"{name} forward"] = self._synced(
                    lambda layer=layer, x=x: layer.forward(x, training=True)
                )
                calls[f"{name} backward"] = self._synced(lambda layer=layer, dy=dy: layer.backward(dy))
            x = y
        if layers is None:
            labels = dev.array(self.labels_host)
            calls["loss forward"] = self._synced(lambda: self.loss.forward(x, labels))
            calls["loss backward"] = self._synced(self.loss.backward)
        return calls

    def train_step(self, model) -> Callable[[], None]:
        """A closure running one training step of ``model`` (with its own SGD state) on the fixed batch."""
        dev = self.device
        x, labels = dev.array(self.x_host), dev.array(self.labels_host)
        optimizer = O.SGD(model, lr=LR, momentum=MOMENTUM)

        def step():
            logits = model.forward(x, training=True)  # (B, classes)
            self.loss.forward(logits, labels)
            model.backward(self.loss.backward())
            optimizer.step()

        return self._synced(step)

    def _synced(self, fn: Callable) -> Callable[[], None]:
        """``fn`` followed by a device synchronize (a no-op on cpu and sim), so a GPU call is timed whole."""

        def call():
            fn()
            self.device.synchronize()

        return call

    def step_peak_bytes(self) -> int:
        """Peak NumPy bytes (tracemalloc) during one training step, above what was alive before."""
        step = self.train_step(copy.deepcopy(self.model))
        step()  # the first step allocates the optimizer's velocity buffers; measure a steady-state step
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            step()
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()

    # -- PyTorch --
    def torch_layer_calls(self) -> dict[str, Callable]:
        """The PyTorch twin of :meth:`layer_calls`: forward, and backward through autograd (dx and the
        parameter gradients, the graph kept so that it can be run again), keyed the same way."""
        torch, dev = self.torch, self.torch_device
        net = torch_model(self.model, torch).to(dev)
        gen = torch.Generator().manual_seed(1)
        x = torch.from_numpy(self.x_host).to(dev)
        calls: dict[str, Callable] = {}
        for index, (name, module) in enumerate(zip(self.model.layers, net, strict=True)):
            # Like scratchnet's model, skip dL/dx of the first layer unless the model computes it.
            needs_dx = index > 0 or self.model.input_grad
            x = x.detach().requires_grad_(needs_dx)
            y = module(x)
            dy = torch.randn(y.shape, generator=gen, dtype=y.dtype).to(dev)
            inputs = [x, *module.parameters()] if needs_dx else list(module.parameters())
            calls[f"{name} forward"] = self._torch_synced(lambda m=module, x=x: m(x))
            calls[f"{name} backward"] = self._torch_synced(
                lambda y=y, i=inputs, dy=dy: torch.autograd.grad(y, i, dy, retain_graph=True)
            )
            x = y
        logits = x.detach().requires_grad_(True)
        labels = torch.from_numpy(self.labels_host).to(dev)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        calls["loss forward"] = self._torch_synced(lambda: torch.nn.functional.cross_entropy(logits, labels))
        calls["loss backward"] = self._torch_synced(
            lambda: torch.autograd.grad(loss, [logits], retain_graph=True)
        )
        return calls

    def torch_train_step(self) -> Callable[[], None]:
        torch, dev = self.torch, self.torch_device
        net = torch_model(self.model, torch).to(dev)
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
        x = torch.from_numpy(self.x_host).to(dev)
        labels = torch.from_numpy(self.labels_host).to(dev)

        def step():
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), labels).backward()
            optimizer.step()

        return self._torch_synced(step)

    def _torch_synced(self, fn: Callable) -> Callable[[], None]:
        if self.torch_device != "cuda":
            return fn

        def call():
            fn()
            self.torch.cuda.synchronize()

        return call

    def torch_max_difference(self, net=None) -> float:
        """max |logits_scratchnet - logits_torch| in inference mode, for ``net`` (default: the twin the bench
        times): the proof that both libraries compute the same thing."""
        torch = self.torch
        net = (net or torch_model(self.model, torch)).to(self.torch_device).eval()
        with torch.no_grad():
            theirs = net(torch.from_numpy(self.x_host).to(self.torch_device)).cpu().numpy()
        ours = self.device.to_host(self.model.forward(self.device.array(self.x_host), training=False))
        return float(np.max(np.abs(ours - theirs)))


def run_table(args, torch) -> dict:
    """Measure everything the table shows; returns the JSON-ready report."""
    device = get_device(args.device)
    torch_device = (
        "cuda" if (device.name == "gpu" and torch is not None and torch.cuda.is_available()) else "cpu"
    )
    report = {
        "command": "python -m scratchnet.bench " + " ".join(args.argv),
        "model": args.model,
        "device": device.name,
        "dtype": "float32",
        "repeats": args.repeats,
        "warmup": args.warmup,
        "torch_device": torch_device if torch is not None else None,
        "torch_note": args.torch_note,
        "environment": environment(torch),
        "rows": [],
        "step_peak_numpy_bytes": {},
        "logits_max_difference": {},
    }
    rows: list[Row] = []
    for i, batch in enumerate(args.batch_sizes):
        model = M.build(args.model, device=device, dtype=np.float32, seed=0)
        bench = Bench(model, batch, torch, torch_device)
        ours = bench.layer_calls(model)
        theirs: dict[str, Callable] = {}
        if torch is not None:
            report["logits_max_difference"][batch] = bench.torch_max_difference()
            theirs = bench.torch_layer_calls()
            theirs["train step"] = bench.torch_train_step()
        ours["train step"] = bench.train_step(model)  # the last: it changes the weights
        for what, call in ours.items():
            rows.append(_measure(batch, what, "fast", call, theirs.get(what), args.repeats, args.warmup))
        # The naive loops: at the smallest batch size only, one run each without warm-up.
        if args.naive and i == 0 and device.name == "cpu":
            naive = naive_copy(model)
            slow = {name for name, layer in naive.layers.items() if isinstance(layer, Conv2D | MaxPool2D)}
            naive_calls = bench.layer_calls(naive, layers=slow)
            naive_calls["train step"] = bench.train_step(naive)
            for what, call in naive_calls.items():
                row = _measure(batch, what, "naive*", call, None, repeats=1, warmup=0)
                row.torch_seconds = next(r.torch_seconds for r in rows if r.what == what and r.batch == batch)
                rows.append(row)
        if device.name == "cpu":
            report["step_peak_numpy_bytes"][batch] = bench.step_peak_bytes()
    rows = _ordered(rows)
    report["rows"] = [r.as_dict() for r in rows]
    report["peak_rss_bytes"] = _peak_rss_bytes()
    return report


def _measure(batch, what, impl, ours: Callable, theirs: Callable | None, repeats: int, warmup: int) -> Row:
    """One row: scratchnet's call and PyTorch's (if any), timed in turns."""
    seconds = time_calls([ours] if theirs is None else [ours, theirs], repeats, warmup)
    return Row(batch, what, impl, seconds[0], repeats, seconds[1] if theirs is not None else None)


def _ordered(rows: list[Row]) -> list[Row]:
    """Layer rows in model order with each naive row right after its fast one; the train steps last."""
    order = {}
    for row in rows:
        order.setdefault(row.what, len(order))
    return sorted(rows, key=lambda r: (r.batch, r.what == "train step", order[r.what], r.impl != "fast"))


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


# --- printing -----------------------------------------------------------------------------------------
def format_report(report: dict) -> str:
    env = report["environment"]
    npi, ti = env["numpy"], env["torch"]
    lines = [
        f"scratchnet bench: {report['model']}, {report['dtype']}, device {report['device']}; "
        f"median of {report['repeats']} after {report['warmup']} warm-up",
        f"machine: {env['machine']}, {env['cpus']} logical CPUs, Python {env['python']}, "
        f"load average at start {_load_text(env['load_average'])}",
        f"numpy {npi['version']}: BLAS {npi['blas']}, "
        + (
            f"threads {npi['threads']}, core type {npi['blas_core']} ({npi['source']})"
            if npi["source"]
            else "threads and core type unknown (pip install threadpoolctl to see them)"
        ),
    ]
    env_text = " ".join(f"{k}={v}" for k, v in env["env"].items()) or "none set"
    lines.append(f"environment: {env_text}")
    if ti is None:
        lines.append(f"torch: {report['torch_note']}")
    else:
        lines.append(
            f"torch {ti['version']} on {report['torch_device']}: threads {ti['threads']} "
            f"(interop {ti['interop_threads']}), BLAS {ti['blas']}"
        )
        lines += [f"  {library}" for library in ti["libraries"]]
    warning = load_warning(env["load_average"], env["cpus"])
    if warning:
        lines.append(warning)
    lines.append(
        "vs torch = PyTorch time / scratchnet time (scratchnet throughput as a fraction of PyTorch's)"
    )
    lines.append("")
    what = max([18, *(len(r["what"]) for r in report["rows"])])  # "stage1_block1 backward" is 22 long
    header = (
        f"{'batch':>5}  {'what':<{what}}  {'impl':<6}  {'ms':>10}  {'img/s':>9}  "
        f"{'torch ms':>9}  {'torch img/s':>11}  {'vs torch':>8}"
    )
    lines += [header, "-" * len(header)]
    for r in report["rows"]:
        torch_ms = "" if r["torch_seconds"] is None else f"{1e3 * r['torch_seconds']:.3f}"
        torch_rate = "" if r["torch_images_per_second"] is None else f"{r['torch_images_per_second']:,.0f}"
        ratio = "" if r["speed_vs_torch"] is None else f"{r['speed_vs_torch']:.2f}x"
        lines.append(
            f"{r['batch']:>5}  {r['what']:<{what}}  {r['impl']:<6}  {1e3 * r['seconds']:>10.3f}  "
            f"{r['images_per_second']:>9,.0f}  {torch_ms:>9}  {torch_rate:>11}  {ratio:>8}"
        )
    lines.append("")
    if any(r["impl"] == "naive*" for r in report["rows"]):
        lines.append("naive*: the readable loop implementation, smallest batch only, one run without warm-up")
    for batch, diff in report["logits_max_difference"].items():
        lines.append(f"batch {batch}: max |logits - torch logits| = {diff:.2e} (same weights, same input)")
    peaks = report["step_peak_numpy_bytes"]
    if peaks:
        text = ", ".join(f"batch {b}: {v / 2**20:.1f} MiB" for b, v in peaks.items())
        lines.append(f"peak NumPy allocations in one training step (tracemalloc): {text}")
    rss_mib = report["peak_rss_bytes"] / 2**20
    lines.append(f"process peak RSS (ru_maxrss, the whole run, both libraries): {rss_mib:.0f} MiB")
    return "\n".join(lines)


def load_warning(load, cpus) -> str | None:
    """The warning printed above figures measured while other processes competed for the cores (a load
    average above half of them), or None."""
    if load is None or not cpus or load[0] <= 0.5 * cpus:
        return None
    return (
        f"WARNING: load average {load[0]:.1f} on {cpus} CPUs: other processes compete for the "
        "cores, so the figures are slow and noisy (multi-threaded BLAS and OpenMP suffer most; for a "
        "steadier comparison run both libraries on one thread: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1)"
    )


def _load_text(load) -> str:
    return "unknown" if load is None else " ".join(f"{v:.2f}" for v in load)


# --- time to accuracy ---------------------------------------------------------------------------------
@dataclass
class _TestTarget:
    """A stop condition for the trainer's loop: test after every epoch, stop at ``target`` test accuracy."""

    target: float
    quiet: bool
    train_seconds: float = 0.0
    epochs: list[dict] = field(default_factory=list)  # one record per epoch
    reached: dict | None = None

    def __call__(self, run, record: dict) -> str | None:
        from scratchnet.evaluate import evaluate

        self.train_seconds += len(run.data.train) / record["images_per_second"]
        test = evaluate(run.model, run.data.test, transform=run.data.eval_transform)
        result = {
            "epoch": record["epoch"],
            "train_loss": record["train_loss"],
            "train_images_per_second": record["images_per_second"],
            "test_accuracy": test.accuracy,
            "train_seconds": self.train_seconds,
            "wall_seconds": time.perf_counter() - run.start,
        }
        self.epochs.append(result)
        if not self.quiet:
            print(
                f"epoch {result['epoch']}: test accuracy {test.accuracy:.4f}, "
                f"train {result['train_images_per_second']:,.0f} img/s, "
                f"{self.train_seconds:.1f} s training, {result['wall_seconds']:.1f} s wall",
                flush=True,
            )
        if test.accuracy < self.target:
            return None
        self.reached = result
        return f"reached test accuracy {test.accuracy:.4f} >= {self.target}"


def time_to_accuracy(args) -> dict:
    """Train LeNet-5 on Fashion-MNIST, test after every epoch, stop at ``args.target`` test accuracy.

    The trainer's own loop (``train.prepare`` and ``train.fit``) with its defaults, no validation split
    (all 60,000 images train), no checkpoints and a stop condition that tests after each epoch.
    ``train_seconds`` counts only the training epochs; ``wall_seconds`` also the data loading and the tests.
    """
    from scratchnet import train as T

    config = T.TrainConfig(
        model="lenet5",
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.max_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        val_fraction=0.0,
        progress=False,
        download=False,
    )
    run = T.prepare(config, log=lambda line: None)
    if not args.json:
        print(
            f"LeNet-5 on {config.dataset} ({len(run.data.train):,} training, {len(run.data.test):,} test "
            f"images), device {config.device}: batch {config.batch_size}, SGD lr {config.lr} "
            f"momentum {config.momentum} weight decay {config.weight_decay}, "
            f"{config.schedule} schedule over {config.epochs} epochs",
            flush=True,
        )
    stop = _TestTarget(args.target, quiet=args.json)
    T.fit(run, stop, log=lambda line: None)
    reached = stop.reached
    return {
        "command": "python -m scratchnet.bench " + " ".join(args.argv),
        "config": asdict(config),
        "target": args.target,
        "reached": reached is not None,
        "epochs": stop.epochs,
        "train_seconds": reached["train_seconds"] if reached else None,
        "wall_seconds": reached["wall_seconds"] if reached else None,
        "environment": environment(None),
    }


# --- the command line ---------------------------------------------------------------------------------
def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"batch sizes must be comma-separated integers, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return sizes


def table_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scratchnet.bench",
        description="Time scratchnet's layers and training step next to PyTorch's. Other modes: "
        "'python -m scratchnet.bench time-to-accuracy --help', 'python -m scratchnet.bench kernels --help', "
        "'python -m scratchnet.bench parallel --help', 'python -m scratchnet.bench models --help', "
        "'python -m scratchnet.bench loader --help', "
        "'python -m scratchnet.bench sim --help'.",
    )
    p.add_argument("--model", choices=BENCH_MODELS, default="lenet5")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=[64, 128, 256], help="comma-separated")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per measurement (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    p.add_argument("--device", choices=DEVICE_NAMES, default="cpu")
    p.add_argument("--quick", action="store_true", help="batch 8, one repeat: a smoke test of a few seconds")
    p.add_argument("--no-naive", dest="naive", action="store_false", help="skip the slow naive loops")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch columns")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def tta_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scratchnet.bench time-to-accuracy",
        description="Train LeNet-5 on Fashion-MNIST until the test accuracy reaches --target; time it.",
    )
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument(
        "--dataset", default="fashion-mnist", help="default: the full Fashion-MNIST (60,000 images)"
    )
    p.add_argument("--data-dir", help="folder holding the IDX .gz files (default: cache / system path)")
    p.add_argument("--device", choices=DEVICE_NAMES, default="cpu")
    p.add_argument("--json", action="store_true")
    return p


def _load_torch(wanted: bool):
    """``(torch module or None, what the report says about it)``."""
    if not wanted:
        return None, "skipped (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, "not installed (pip install 'scratchnet-cnn[reference]' for the comparison columns)"
    # FP32 against FP32: on an Ampere or newer GPU PyTorch would otherwise use TF32 for convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch, ""


@cli_errors
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "kernels":
        from scratchnet.benchmarks import kernels

        return kernels.main(argv[1:])
    if argv and argv[0] == "sim":
        from scratchnet.benchmarks import sim_cost

        return sim_cost.main(argv[1:])
    if argv and argv[0] in ("parallel", "loader", "models"):
        from scratchnet.benchmarks import parallel

        return parallel.main(argv if argv[0] in ("loader", "models") else argv[1:])
    keep_freed_memory()  # as the trainer does (both libraries share this process)
    if argv and argv[0] == "time-to-accuracy":
        parser = tta_parser()
        args = parser.parse_args(argv[1:])
        if not 0 < args.target <= 1:
            parser.error(f"--target is an accuracy in (0, 1], got {args.target}")
        args.argv = argv
        result = time_to_accuracy(args)
        if args.json:
            print(json.dumps(result, indent=2))
        elif result["reached"]:
            print(
                f"test accuracy >= {args.target} after {len(result['epochs'])} epochs: "
                f"{result['train_seconds']:.1f} s of training, {result['wall_seconds']:.1f} s wall"
            )
        else:
            best = max(e["test_accuracy"] for e in result["epochs"])
            print(f"target {args.target} not reached in {args.max_epochs} epochs (best {best:.4f})")
        return 0 if result["reached"] else 1
    parser = table_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.batch_sizes, args.repeats = [8], 1
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    torch, args.torch_note = _load_torch(args.torch)
    report = run_table(args, torch)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
