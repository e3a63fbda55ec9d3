"""Time the two choices of the CPU convolution's backward (``scratchnet/layers/conv.py``), models' shapes.

1. dx by col2im against dx as a convolution of dy with the flipped kernel (wide columns), for the stride-1
   convolutions of LeNet-5, AlexNet-CIFAR, VGG-CIFAR and ResNet-20: the whole backward (dweight and dx), on
   the threads given, each route forced in turn, timed in alternating blocks (``time_calls``). The last
   column is the route the rule (``dx_by_flipped_kernel``) picks.
2. The weight-gradient product of one chunk of images on one thread in both orientations:
   dY[n] cols[n]ᵀ (F, K) and cols[n] dY[n]ᵀ (K, F), the one the backward uses.

    python tools/conv_routes.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
import threadpoolctl

from scratchnet._memory import keep_freed_memory
from scratchnet.benchmarks.speed import time_calls
from scratchnet.layers import conv

# name: N, C, H (= W), F, kernel, padding
GEOMETRIES = {
    "lenet5 conv2": (64, 6, 14, 16, 5, 0),
    "alexnet-cifar conv2": (128, 32, 16, 64, 3, 1),
    "alexnet-cifar conv3": (128, 64, 8, 96, 3, 1),
    "alexnet-cifar conv4": (128, 96, 8, 96, 3, 1),
    "alexnet-cifar conv5": (128, 96, 8, 64, 3, 1),
    "vgg-cifar conv1_2": (128, 32, 32, 32, 3, 1),
    "vgg-cifar conv2_1": (128, 32, 16, 64, 3, 1),
    "vgg-cifar conv3_2": (128, 128, 8, 128, 3, 1),
    "resnet20 16ch 32x32": (128, 16, 32, 16, 3, 1),
    "resnet20 32ch 16x16": (128, 32, 16, 32, 3, 1),
    "resnet20 64ch 8x8": (128, 64, 8, 64, 3, 1),
}
# conv.DX_WIDE_MAX_EXTRA and conv.DX_MAX_FILTERS_PER_CHANNEL, forcing each route
ROUTES = {"col2im": (0.0, 0.0), "flipped": (float("inf"), float("inf"))}
DEFAULT_LIMITS = (conv.DX_WIDE_MAX_EXTRA, conv.DX_MAX_FILTERS_PER_CHANNEL)


def backward_by(route: str, backward) -> None:
    """One call of ``backward`` with dx forced through ``route``; the rule's limits restored afterwards."""
    conv.DX_WIDE_MAX_EXTRA, conv.DX_MAX_FILTERS_PER_CHANNEL = ROUTES[route]
    try:
        backward()
    finally:
        conv.DX_WIDE_MAX_EXTRA, conv.DX_MAX_FILTERS_PER_CHANNEL = DEFAULT_LIMITS


def backward_routes(rounds: int) -> None:
    print("backward (dweight and dx), ms: median of each route's calls, timed in alternating blocks")
    print(f"{'convolution':22} {'N, C, H, F, K, P':>24} {'col2im':>8} {'flipped':>8} {'ratio':>6}  rule")
    rng = np.random.default_rng(0)
    for name, (N, C, H, F, K, P) in GEOMETRIES.items():
        x = rng.standard_normal((N, C, H, H), dtype=np.float32)
        weight = rng.standard_normal((F, C, K, K), dtype=np.float32)
        y, cache = conv.conv2d_forward_fast(x, weight, None, padding=(P, P))
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        backward = functools.partial(
            conv.conv2d_backward_fast,
            dy,
            cache,
            weight,
            padding=(P, P),
            workspace=conv.Workspace(),
            with_bias=False,
        )
        repeats = rounds * max(5, int(5e8 // (N * C * H * H * K * K * F)))  # about 0.2-1 s per block
        calls = [functools.partial(backward_by, route, backward) for route in ROUTES]
        col2im, flipped = (seconds * 1e3 for seconds in time_calls(calls, repeats, rounds=rounds))
        rule = "flipped" if conv.dx_by_flipped_kernel(x.shape, weight.shape, (1, 1), (P, P)) else "col2im"
        shape = f"{N}, {C}, {H}, {F}, {K}, {P}"
        print(f"{name:22} {shape:>24} {col2im:8.2f} {flipped:8.2f} {col2im / flipped:5.2f}x  {rule}")


def weight_product_orientations(rounds: int) -> None:
    print("\nweight-gradient product of one chunk on one thread, µs: dY colsᵀ (F, K) against cols dYᵀ (K, F)")
    print(f"{'convolution':22} {'images, F, C·K·K, OH·OW':>24} {'dY colsT':>9} {'cols dYT':>9} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for name, (_, C, H, F, K, P) in GEOMETRIES.items():
        OH = H + 2 * P - K + 1
        rows, positions = C * K * K, OH * OH
        images = max(1, conv.CHUNK_BYTES // (rows * positions * 4))  # the backward's chunk
        cols = rng.standard_normal((images, rows, positions), dtype=np.float32)
        dy = rng.standard_normal((images, F, positions), dtype=np.float32)
        products = [
            functools.partial(
                np.matmul, dy, cols.transpose(0, 2, 1), out=np.empty((images, F, rows), np.float32)
            ),
            functools.partial(
                np.matmul, cols, dy.transpose(0, 2, 1), out=np.empty((images, rows, F), np.float32)
            ),
        ]
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            fk, kf = (seconds * 1e6 for seconds in time_calls(products, 200 * rounds, rounds=rounds))
        shape = f"{images}, {F}, {rows}, {positions}"
        print(f"{name:22} {shape:>24} {fk:9.0f} {kf:9.0f} {fk / kf:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads for the backward (default 2)")
    args = parser.parse_args()
    keep_freed_memory()
    print(f"threads: {args.threads} for the backward, 1 for the products; rounds: {args.rounds}\n")
    with threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas"):
        backward_routes(args.rounds)
    weight_product_orientations(args.rounds)


if __name__ == "__main__":
    main()
