// Kernel exercise 6: im2col, which turns a convolution into a matrix product.
//
// cols_per_image[n, (c, kh, kw), (oh, ow)] = x[n, c, oh * S - P + kh, ow * S - P + kw]   (0 in the padding)
// x (N, C, H, W); cols_per_image (N, C * KH * KW, OH * OW), OH = (H + 2P - KH) / S + 1, OW likewise.
// Row (c, kh, kw) is input channel c seen through kernel offset (kh, kw); column (oh, ow) is one receptive
// field. A convolution is then y[n] = weight (F, C * KH * KW) @ cols_per_image[n].
//
// Thread mapping (1-D): one thread per element of cols_per_image, flat index i with the last axis fastest
// (ow, then oh, kw, kh, c, n). Neighbouring threads take neighbouring ow: neighbouring reads and writes.
// Launch (the checker's): ceil(N * C * KH * KW * OH * OW / 256) blocks of 256 threads.

extern "C" __global__ void im2col(const float* x, float* cols_per_image, int N, int C, int H, int W, int KH,
                                  int KW, int S, int P, int OH, int OW) {
    // TODO: write the body (see the comments above)
}
