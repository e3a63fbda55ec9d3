import numpy as np


def log_uniform(low, high, size, rng):
    """`size` samples in [low, high], uniform in log10: every decade equally likely; drawn from rng."""
    exponents = rng.uniform(np.log10(low), np.log10(high), size)  # uniform between the two exponents
    return 10.0**exponents
