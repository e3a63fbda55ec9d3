// cooperative_groups.h for the CUDA simulator: the subset of CUDA's cooperative groups that kernels in the
// style of the CUDA samples and llm.c use, built on the simulator's barriers and warp functions
// (cuda_sim.h, force-included before this file).
//
//   namespace cg = cooperative_groups;
//   cg::thread_block block = cg::this_thread_block();     block.sync(), block.thread_rank(), block.size()
//   cg::thread_block_tile<32> warp = cg::tiled_partition<32>(block);   (or 16, 8, 4, 2, 1)
//   warp.shfl_down(v, 1), warp.any(p), warp.ballot(p), warp.meta_group_rank(), cg::reduce(warp, v, cg::plus<float>())
#pragma once

namespace cooperative_groups {

class thread_block {
   public:
    void sync() const { ::sim_rt::syncthreads(0); }  // line 0: every block.sync() counts as one barrier site
    unsigned int thread_rank() const { return ::sim_rt::thread_rank(); }
    unsigned int size() const { return blockDim.x * blockDim.y * blockDim.z; }
    unsigned int num_threads() const { return size(); }
    dim3 group_index() const { return dim3(blockIdx); }
    dim3 thread_index() const { return dim3(threadIdx); }
    dim3 group_dim() const { return blockDim; }
    dim3 dim_threads() const { return blockDim; }
};

inline thread_block this_thread_block() { return thread_block(); }

// A tile of N consecutive threads (N a power of two, at most 32): its lanes are part of one warp, so the
// tile's collectives are the warp functions with the tile's lanes as the mask.
template <unsigned int N>
class thread_block_tile {
    static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "tile sizes are powers of two up to 32");

   public:
    unsigned int mask() const {
        unsigned int lanes = N == 32 ? 0xffffffffu : (1u << N) - 1u;
        return lanes << (::sim_rt::lane_id() / N * N);
    }
    void sync() const { ::sim_rt::syncwarp(mask()); }
    unsigned int thread_rank() const { return ::sim_rt::thread_rank() % N; }
    unsigned int size() const { return N; }
    unsigned int num_threads() const { return N; }
    unsigned int meta_group_rank() const { return ::sim_rt::thread_rank() / N; }
    unsigned int meta_group_size() const {
        unsigned int threads = blockDim.x * blockDim.y * blockDim.z;
        return (threads + N - 1) / N;
    }
    template <class T>
    T shfl(T value, int source_rank) const {
        return __shfl_sync(mask(), value, source_rank, N);
    }
    template <class T>
    T shfl_down(T value, unsigned int delta) const {
        return __shfl_down_sync(mask(), value, delta, N);
    }
    template <class T>
    T shfl_up(T value, unsigned int delta) const {
        return __shfl_up_sync(mask(), value, delta, N);
    }
    template <class T>
    T shfl_xor(T value, int lane_mask) const {
        return __shfl_xor_sync(mask(), value, lane_mask, N);
    }
    int any(int predicate) const { return __any_sync(mask(), predicate); }
    int all(int predicate) const { return __all_sync(mask(), predicate) ; }
    unsigned int ballot(int predicate) const {  // bit i: tile rank i, as CUDA's tile.ballot
        return __ballot_sync(mask(), predicate) >> (::sim_rt::lane_id() / N * N);
    }
};

template <unsigned int N>
inline thread_block_tile<N> tiled_partition(const thread_block&) {
    return thread_block_tile<N>();
}

inline void sync(const thread_block& group) { group.sync(); }
template <unsigned int N>
inline void sync(const thread_block_tile<N>& group) {
    group.sync();
}

// The operators of cg::reduce: plus sums, greater keeps the largest, less the smallest.
template <class T>
struct plus {
    T operator()(T a, T b) const { return a + b; }
};
template <class T>
struct greater {
    T operator()(T a, T b) const { return a > b ? a : b; }
};
template <class T>
struct less {
    T operator()(T a, T b) const { return a < b ? a : b; }
};
template <class T>
struct bit_and {
    T operator()(T a, T b) const { return a & b; }
};
template <class T>
struct bit_or {
    T operator()(T a, T b) const { return a | b; }
};
template <class T>
struct bit_xor {
    T operator()(T a, T b) const { return a ^ b; }
};

// Every thread of the tile gets op applied over the values of all its threads (a butterfly of shfl_xor).
template <unsigned int N, class T, class Op>
inline T reduce(const thread_block_tile<N>& tile, T value, Op op) {
    for (unsigned int offset = N / 2; offset > 0; offset /= 2) value = op(value, tile.shfl_xor(value, (int)offset));
    return value;
}

}  // namespace cooperative_groups
