"""col2im, the adjoint of im2col: the heart of the convolution's dx (lesson 05).

im2col:    cols_batch_first[(c, kh, kw), (n, oh, ow)] = x_pad[n, c, oh*S + kh, ow*S + kw]
           x (N, C, H, W) -> (C·KH·KW, N·OH·OW); rows ordered c, kh, kw; columns n, oh, ow

col2im goes back: given an array of that (C·KH·KW, N·OH·OW) shape, return the array of x's shape
x_shape = (N, C, H, W) that receives every entry at the pixel im2col copied it from.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/col2im.py
    python -m scratchnet.gradcheck lessons/exercises/col2im.py --hint   # + formulas
"""

import numpy as np


def col2im(cols_batch_first: np.ndarray, x_shape: tuple, KH: int, KW: int, S: int, P: int) -> np.ndarray:
    """(N, C, H, W) from cols_batch_first (C·KH·KW, N·OH·OW)."""
    raise NotImplementedError("write col2im, then run the check")
