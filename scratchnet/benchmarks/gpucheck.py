"""One command that checks a GPU machine end to end, in a few minutes::

    python -m scratchnet.gpucheck                 # on the GPU; exit 0 when nothing failed
    python -m scratchnet.gpucheck --device sim    # the same checks on the simulator (CI runs this)
    python -m scratchnet.gpucheck --device sim --count-launches   # kernel launches per training step

Each line is ``PASS``, ``FAIL`` or ``INFO`` and what was checked:

1. the environment: GPU name and memory, driver / CUDA runtime / NVRTC / CuPy versions, TF32, and
   whether the driver, NVRTC and the GPU fit together (if not, which extra to install);
2. every kernel file compiles and loads;
3. every kernel's resources (registers per thread, most threads per block, from the compiled kernel)
   allow the block size it is launched with;
4. the layers of LeNet-5 and AlexNet on the device against the NumPy code on ``cpu``, float32 and
   float64: logits, loss and every parameter gradient of one training step;
5. a LeNet-5 and an AlexNet training step: time, finite loss, memory-pool growth from one step to the
   next (none expected), host<->device copies and kernel launches per step;
6. one launch over more than 2^31 elements (64-bit indexing), where the GPU has the memory;
7. the kernel harness (``scratchnet.kernel_bench``), briefly.

Without a GPU (``--device gpu``, the default) it says why and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from scratchnet import cupy_backend as _cupy
from scratchnet._cuda.sources import kernel_dir, kernel_source, launch_bounds
from scratchnet.benchmarks import kernels as kernel_bench
from scratchnet.device import Device, get_device
from scratchnet.errors import cli_errors
from scratchnet.layers import SoftmaxCrossEntropy
from scratchnet.models import AlexNet, LeNet5
from scratchnet.optim import SGD
from scratchnet.sim import parse_kernels

LARGE_COUNT = 2**31 + 2**20  # elements of the large-index launch: past what a 32-bit index can reach


@dataclass
class Line:
    status: str  # "PASS", "FAIL" or "INFO"
    text: str

    def __str__(self) -> str:
        return f"{self.status} {self.text}"


@dataclass(frozen=True)
class Net:
    """A model to check: ``build(device, dtype)`` and the shape of one input image."""

    name: str
    build: Callable
    image: tuple[int, int, int]
    batch: int


def nets(dev: Device) -> list[Net]:
    """LeNet-5 and AlexNet: the paper's AlexNet (groups, LRN, 227x227) on a GPU, its CIFAR-size variant on
    the simulator, where a 227x227 batch would take many minutes."""
    alexnet = (
        Net("AlexNet", lambda d, t: AlexNet(10, "paper", device=d, dtype=t, seed=0), (3, 227, 227), 8)
        if dev.name == "gpu"
        else Net(
            "AlexNet (cifar)", lambda d, t: AlexNet(10, "cifar", device=d, dtype=t, seed=0), (3, 32, 32), 4
        )
    )
    return [Net("LeNet-5", lambda d, t: LeNet5(device=d, dtype=t, seed=0), (1, 28, 28), 16), alexnet]


# --- the checks -----------------------------------------------------------------------------------------
def check_environment(dev: Device) -> Iterator[Line]:
    if dev.name != "gpu":
        yield Line("INFO", f"device {dev.name}: the CUDA kernels run on the CPU simulator, no GPU involved")
        return
    for key, value in _cupy.environment().items():
        yield Line("INFO", f"{key}: {value}")
    found = _cupy.versions()
    if found is None:
        return  # no NVRTC: the nvrtc line says so, and every compile will fail with the remedy
    driver, nvrtc, capability = found
    advice = _cupy.version_advice()
    what = (
        f"driver CUDA {_cupy.cuda_version(driver)}, NVRTC {nvrtc[0]}.{nvrtc[1]}, "
        f"compute capability {_cupy.capability_version(capability)}"
    )
    extra = "gpu" if nvrtc[0] >= 13 else "gpu12"  # the extra whose NVRTC this is
    yield (
        Line("FAIL", f"versions: {what}: {advice}")
        if advice
        else Line("PASS", f"versions: {what} fit the {extra} extra")
    )


def kernel_files() -> list[str]:
    return sorted(str(p.relative_to(kernel_dir())) for p in kernel_dir().rglob("*.cu"))


def check_compile_and_resources(dev: Device) -> Iterator[Line]:
    """Compile and load every file; on a GPU, compare each kernel's limits with its launch block size."""
    for filename in kernel_files():
        try:
            kernels = {name: dev.kernel(filename, name) for name in parse_kernels(kernel_source(filename))}
        except Exception as e:  # a compile error names the file and carries the log
            yield Line("FAIL", f"compile kernels/{filename}: {e}")
            continue
        yield Line("PASS", f"compile and load kernels/{filename} ({len(kernels)} kernels)")
        if dev.name != "gpu":
            continue
        bounds = launch_bounds(filename)
        for name, kernel in sorted(kernels.items()):
            attributes = kernel.raw.attributes
            block = bounds[name.split("<")[0]]
            limit, regs = attributes["max_threads_per_block"], attributes["num_regs"]
            status = "PASS" if block <= limit else "FAIL"
            yield Line(
                status,
                f"resources {name}: {regs} registers/thread, at most {limit} threads/block, "
                f"launched with {block}",
            )


class _Trainer:
    """A float32 model of ``net`` on ``dev`` with SGD (momentum 0.9) and one fixed batch, already trained
    for two steps: the first compiles the kernels, the second warms up; :meth:`step` is the one to measure."""

    def __init__(self, dev: Device, net: Net):
        self.model = net.build(dev, np.float32)
        self.loss_fn = SoftmaxCrossEntropy(device=dev, dtype=np.float32)
        self.optimizer = SGD(self.model, lr=0.01, momentum=0.9)
        rng = np.random.default_rng(1)
        self.x = dev.array(rng.standard_normal((net.batch, *net.image)).astype(np.float32))
        self.labels = dev.array(rng.integers(0, 10, net.batch).astype(np.int64))
        for _ in range(2):
            self.step()
        dev.synchronize()

    def step(self) -> float:
        loss = self.loss_fn.forward(self.model.forward(self.x, training=True), self.labels)
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step()
        return loss


def _max_relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / max(1e-30, float(np.max(np.abs(want)))))


def check_layers_against_cpu(dev: Device, net: Net, dtype) -> Iterator[Line]:
    """One forward and backward of ``net`` on ``dev`` and on ``cpu`` from the same weights and batch:
    logits, loss and every gradient must agree to the dtype's rounding (dropout draws the same masks on
    every device)."""
    tolerance = 1e-3 if dtype == np.float32 else 1e-9
    rng = np.random.default_rng(0)
    x = rng.standard_normal((net.batch, *net.image)).astype(dtype)
    labels = rng.integers(0, 10, net.batch).astype(np.int64)
    results = {}
    for device in ("cpu", dev):
        model = net.build(device, dtype)
        device = model.device
        loss_fn = SoftmaxCrossEntropy(device=device, dtype=dtype)
        logits = model.forward(device.array(x), training=True)
        loss = loss_fn.forward(logits, device.array(labels))
        model.backward(loss_fn.backward())
        results[device.name] = {
            "logits": device.to_host(logits),
            "loss": np.array(loss),
            **{k: device.to_host(g) for k, g in model.grads.items()},
        }
    cpu, other = results["cpu"], results[dev.name]
    errors = {k: _max_relative_error(other[k].astype(np.float64), cpu[k].astype(np.float64)) for k in cpu}
    worst = max(errors, key=errors.get)
    status = "PASS" if errors[worst] <= tolerance else "FAIL"
    yield Line(
        status,
        f"layers of {net.name} on {dev.name} vs cpu, {np.dtype(dtype)}: logits, loss and {len(errors) - 2} "
        f"gradients; worst relative error {errors[worst]:.1e} ({worst}, tolerance {tolerance:.0e})",
    )


def check_training_step(dev: Device, net: Net) -> Iterator[Line]:
    """One measured SGD step in float32, after two that compile and warm up."""
    trainer = _Trainer(dev, net)
    memory_before = _cupy.memory_in_use() if dev.name == "gpu" else None
    transfers, launches = dict(dev.transfers), dict(dev.launches)
    start = time.perf_counter()
    loss = trainer.step()
    dev.synchronize()
    seconds = time.perf_counter() - start
    copies = {k: v - transfers.get(k, 0) for k, v in dev.transfers.items() if v - transfers.get(k, 0)}
    step_launches = sum(dev.launches.values()) - sum(launches.values())
    what = f"{net.name} training step (batch {net.batch}) on {dev.name}"
    yield Line("PASS" if math.isfinite(loss) else "FAIL", f"{what}: loss {loss:.4f}, {seconds * 1e3:.1f} ms")
    # One loss value comes back per step; the batch went in before the timed step.
    yield Line(
        "PASS" if copies == {"device_to_host": 1} else "FAIL",
        f"{what}: host<->device copies {copies or 'none'} (expected one device_to_host: the loss)",
    )
    yield Line("INFO", f"{what}: {step_launches} kernel launches")
    if memory_before is not None:
        growth = _cupy.memory_in_use() - memory_before
        yield Line("PASS" if growth <= 0 else "FAIL", f"{what}: memory pool grew by {growth} bytes in a step")


def check_large_index(dev: Device) -> Iterator[Line]:
    """relu_forward over LARGE_COUNT > 2^31 float32 elements: the flat index must be 64-bit."""
    if dev.name != "gpu":
        yield Line("INFO", "large-index launch: skipped (GPU only; 17 GB of arrays)")
        return
    needed = 2 * LARGE_COUNT * 4
    free = _cupy.free_memory()
    if free < 1.2 * needed:
        yield Line(
            "INFO", f"large-index launch: skipped, needs {needed / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
        )
        return
    x = dev.zeros((LARGE_COUNT,), np.float32)
    y = dev.empty((LARGE_COUNT,), np.float32)
    x[-3:] = dev.array(np.array([-1.0, 2.0, 3.0], np.float32))
    dev.kernel("relu.cu", "relu_forward", np.float32).launch_1d(LARGE_COUNT, (x, y, LARGE_COUNT))
    tail = dev.to_host(y[-3:])
    status = "PASS" if np.array_equal(tail, [0.0, 2.0, 3.0]) else "FAIL"
    yield Line(status, f"large-index launch: relu over {LARGE_COUNT} elements, last three {tail.tolist()}")
    # del gives the 17 GB back to CuPy's pool, not to the driver: free the pool's blocks too, or a later
    # PyTorch reference on a 24-40 GB card runs out of memory.
    del x, y
    _cupy.free_pool()


def check_harness(dev: Device) -> Iterator[Line]:
    """The harness, briefly: on a GPU every op at its first benchmark size; on the simulator max-pooling."""
    if dev.name == "gpu":
        ops = [dataclasses.replace(op, bench_sizes=op.bench_sizes[:1]) for op in kernel_bench.OPS.values()]
    else:
        ops = [kernel_bench.POOL]
    report: list[str] = []
    ok = kernel_bench.run(ops, dev.name, np.float32, repeats=3, out=report.append)
    for line in "\n".join(report).splitlines():
        if line.strip():
            yield Line("INFO", f"  {line}")
    yield Line("PASS" if ok else "FAIL", f"kernel harness: {', '.join(op.name for op in ops)} on {dev.name}")


def run_checks(dev: Device, harness: bool = True, out=print) -> bool:
    """Print every check's lines; return True when none failed."""
    failed = 0
    checks = [check_environment(dev), check_compile_and_resources(dev)]
    for net in nets(dev):
        checks += [check_layers_against_cpu(dev, net, dtype) for dtype in (np.float32, np.float64)]
    checks += [check_training_step(dev, net) for net in nets(dev)]
    checks.append(check_large_index(dev))
    if harness:
        checks.append(check_harness(dev))
    for check in checks:
        for line in check:
            failed += line.status == "FAIL"
            out(str(line))
    out(f"{'FAIL' if failed else 'PASS'} gpucheck: {failed} failed")
    return failed == 0


def count_launches(dev: Device, out=print) -> None:
    """Kernel launches of one float32 training step of each net, by kernel (the third step: compiled)."""
    for net in nets(dev):
        trainer = _Trainer(dev, net)
        dev.launches.clear()
        trainer.step()
        total = sum(dev.launches.values())
        out(f"{net.name}, one training step (SGD with momentum) on {dev.name}: {total} launches")
        for name, count in sorted(dev.launches.items(), key=lambda item: (-item[1], item[0])):
            out(f"  {count:4d}  {name}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scratchnet.gpucheck", description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("gpu", "sim"), default="gpu", help="default: gpu")
    p.add_argument("--no-harness", action="store_true", help="skip the kernel harness (the slowest check)")
    p.add_argument(
        "--count-launches", action="store_true", help="only print the kernel launches of one training step"
    )
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dev = get_device(args.device)  # no GPU: a DeviceError, exit 2 with its reason
    if args.count_launches:
        count_launches(dev)
        return 0
    return 0 if run_checks(dev, harness=not args.no_harness) else 1


if __name__ == "__main__":
    sys.exit(main())
