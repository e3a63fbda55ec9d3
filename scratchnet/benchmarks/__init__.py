"""How fast scratchnet is, and whether its kernels hold on a real GPU: the measuring commands, together.

* :mod:`.speed`: ``python -m scratchnet.bench``, layer by layer and a training step next to PyTorch, the
  time to an accuracy, and the entry to the other benchmarks (``bench kernels``, ``bench sim``,
  ``bench parallel``, ``bench loader``);
* :mod:`.kernels`: ``python -m scratchnet.kernel_bench``, the CUDA kernel harness (naive against optimised);
* :mod:`.parallel`: the data-parallel training step and the data loader's worker processes;
* :mod:`.sim_cost`: what a simulated thread and barrier cost;
* :mod:`.gpucheck`: ``python -m scratchnet.gpucheck``, every kernel and a training step checked on a GPU;
* :mod:`.torch_twins`: the PyTorch equivalent of a scratchnet model, for the speed and parity comparisons.

Benchmarks import the library; the library never imports them.
"""
