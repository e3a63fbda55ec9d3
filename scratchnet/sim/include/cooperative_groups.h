// cooperative_groups.h for the CUDA simulator: the subset of CUDA's cooperative groups that kernels in the
// style of the CUDA samples and llm.c use, built on the simulator's barriers and warp functions
// (cuda_sim.h, force-included before this file).
//
//   namespace cg = cooperative_groups;
//   cg::thread_block block = cg::this_thread_block();     block.sync(), block.thread_rank(), block.size()
//   cg::thread_block_tile<32> warp = cg::tiled_partition<32>(block);   (or 16, 8, 4, 2, 1)
//   warp.shfl_down(v, 1), warp.any(p), warp.ballot(p), warp.meta_group_rank(), cg::reduce(warp, v, cg::plus<float>())
//   cg::thread_group g = block (or a tile, or cg::tiled_partition(block, 8)): g.sync(), g.thread_rank(), g.size()
//   cg::coalesced_group active = cg::coalesced_threads();  (the lanes that reach this call together)
//   cg::labeled_partition(active, label), cg::binary_partition(active, predicate): coalesced groups
//   cg::this_grid(): thread_rank(), size(), block_rank(), num_blocks(); sync() under a cooperative launch
#pragma once

namespace cooperative_groups {

// The lanes of the calling thread's tile of `size` consecutive lanes of its warp.
inline unsigned int tile_lanes(unsigned int size) {
    unsigned int lanes = size >= 32 ? 0xffffffffu : (1u << size) - 1u;
    return lanes << (::sim_rt::lane_id() / size * size);
}

class coalesced_group;

// Any group: the whole block, or some lanes of the calling thread's warp (a tile, or a coalesced group).
class thread_group {
   public:
    void sync(SIM_SITE) const {
        if (whole_block_) ::sim_rt::syncthreads(site);
        else ::sim_rt::syncwarp(lanes_, site);
    }
    unsigned int thread_rank() const {
        return whole_block_ ? ::sim_rt::thread_rank() : __popc(lanes_ & __lanemask_lt());
    }
    unsigned int size() const { return whole_block_ ? blockDim.x * blockDim.y * blockDim.z : __popc(lanes_); }
    unsigned int num_threads() const { return size(); }

   protected:
    friend coalesced_group labeled_partition(const thread_group& group, int label, ::sim_rt::Site site);
    thread_group(bool whole_block, unsigned int lanes) : whole_block_(whole_block), lanes_(lanes) {}
    bool whole_block_;
    unsigned int lanes_;  // the group's lanes of this warp (bit i: lane i), unless whole_block_
};

class thread_block : public thread_group {
   public:
    thread_block() : thread_group(true, 0u) {}
    dim3 group_index() const { return dim3(blockIdx); }
    dim3 thread_index() const { return dim3(threadIdx); }
    dim3 group_dim() const { return blockDim; }
    dim3 dim_threads() const { return blockDim; }
};

inline thread_block this_thread_block() { return thread_block(); }

// The lanes of a warp as a group, ranked in lane order: the collectives are the warp functions with the
// group's lanes as the mask, and rank r is the r-th lane of the mask.
class coalesced_group : public thread_group {
   public:
    explicit coalesced_group(unsigned int lanes) : thread_group(false, lanes) {}
    unsigned int meta_group_rank() const { return 0; }
    unsigned int meta_group_size() const { return 1; }
    template <class T>
    T shfl(T value, unsigned int source_rank, SIM_SITE) const {
        return __shfl_sync(lanes_, value, (int)lane_of_rank(source_rank), 32, site);
    }
    template <class T>
    T shfl_down(T value, unsigned int delta, SIM_SITE) const {  // the own value where no rank is `delta` above
        unsigned int source = thread_rank() + delta;
        T moved = shfl(value, source < size() ? source : thread_rank(), site);
        return moved;
    }
    template <class T>
    T shfl_up(T value, unsigned int delta, SIM_SITE) const {
        unsigned int rank = thread_rank();
        return shfl(value, rank >= delta ? rank - delta : rank, site);
    }
    int any(int predicate, SIM_SITE) const { return __any_sync(lanes_, predicate, site); }
    int all(int predicate, SIM_SITE) const { return __all_sync(lanes_, predicate, site); }
    unsigned int ballot(int predicate, SIM_SITE) const {  // bit r: rank r, as CUDA's coalesced_group::ballot
        unsigned int lanes = __ballot_sync(lanes_, predicate, site), ranks = 0, rank = 0;
        for (unsigned int lane = 0; lane < 32; ++lane)
            if (lanes_ >> lane & 1u) ranks |= (lanes >> lane & 1u) << rank++;
        return ranks;
    }

   private:
    unsigned int lane_of_rank(unsigned int rank) const {
        unsigned int lanes = lanes_;
        for (unsigned int r = 0; r < rank && lanes; ++r) lanes &= lanes - 1;  // drop the lowest lane
        return lanes ? (unsigned int)__ffs((int)lanes) - 1 : ::sim_rt::lane_id();
    }
};

// The calling thread and the lanes of its warp that reach the same call together (__activemask()).
inline coalesced_group coalesced_threads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return coalesced_group(__activemask(file, line));
}

// The lanes of `group` (a tile or a coalesced group) with the same label as the caller's; every lane of the
// group must call it.
inline coalesced_group labeled_partition(const thread_group& group, int label, SIM_SITE) {
    return coalesced_group(__match_any_sync(group.lanes_, label, site));
}
inline coalesced_group binary_partition(const thread_group& group, bool predicate, SIM_SITE) {
    return labeled_partition(group, predicate ? 1 : 0, site);
}

// A tile of N consecutive threads (N a power of two, at most 32): its lanes are part of one warp, so the
// tile's collectives are the warp functions with the tile's lanes as the mask.
template <unsigned int N>
class thread_block_tile : public thread_group {
    static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "tile sizes are powers of two up to 32");

   public:
    thread_block_tile() : thread_group(false, tile_lanes(N)) {}
    unsigned int mask() const { return lanes_; }
    unsigned int thread_rank() const { return ::sim_rt::thread_rank() % N; }
    unsigned int size() const { return N; }
    unsigned int num_threads() const { return N; }
    unsigned int meta_group_rank() const { return ::sim_rt::thread_rank() / N; }
    unsigned int meta_group_size() const {
        unsigned int threads = blockDim.x * blockDim.y * blockDim.z;
        return (threads + N - 1) / N;
    }
    template <class T>
    T shfl(T value, int source_rank, SIM_SITE) const {
        return __shfl_sync(mask(), value, source_rank, N, site);
    }
    template <class T>
    T shfl_down(T value, unsigned int delta, SIM_SITE) const {
        return __shfl_down_sync(mask(), value, delta, N, site);
    }
    template <class T>
    T shfl_up(T value, unsigned int delta, SIM_SITE) const {
        return __shfl_up_sync(mask(), value, delta, N, site);
    }
    template <class T>
    T shfl_xor(T value, int lane_mask, SIM_SITE) const {
        return __shfl_xor_sync(mask(), value, lane_mask, N, site);
    }
    int any(int predicate, SIM_SITE) const { return __any_sync(mask(), predicate, site); }
    int all(int predicate, SIM_SITE) const { return __all_sync(mask(), predicate, site); }
    unsigned int ballot(int predicate, SIM_SITE) const {  // bit i: tile rank i, as CUDA's tile.ballot
        return __ballot_sync(mask(), predicate, site) >> (::sim_rt::lane_id() / N * N);
    }
};


// A tile of `size` lanes (a power of two up to 32) as a thread_group.
inline thread_group tiled_partition(const thread_group&, unsigned int size) {
    struct tile : thread_group {
        explicit tile(unsigned int lanes) : thread_group(false, lanes) {}
    };
    return tile(tile_lanes(size));
}

// The whole grid. Its ranks and sizes are those of CUDA; grid.sync() needs every block of the launch resident
// at once: a cooperative launch (a module loaded with enable_cooperative_groups=True), whose blocks the
// simulator runs by turns on one OS thread (runtime.cpp, run_cooperative).
class grid_group {
   public:
    unsigned long long block_rank() const {
        return ((unsigned long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    }
    unsigned long long num_blocks() const { return (unsigned long long)gridDim.x * gridDim.y * gridDim.z; }
    unsigned long long thread_rank() const {
        return block_rank() * (blockDim.x * blockDim.y * blockDim.z) + ::sim_rt::thread_rank();
    }
    unsigned long long size() const { return num_blocks() * (blockDim.x * blockDim.y * blockDim.z); }
    unsigned long long num_threads() const { return size(); }
    dim3 group_dim() const { return gridDim; }
    dim3 dim_blocks() const { return gridDim; }
    dim3 block_index() const { return dim3(blockIdx); }
    bool is_valid() const { return ::sim_rt::cooperative_launch(); }
    void sync(SIM_SITE) const { ::sim_rt::grid_sync(site); }
};
inline grid_group this_grid() { return grid_group(); }

template <unsigned int N>
inline thread_block_tile<N> tiled_partition(const thread_block&) {
    return thread_block_tile<N>();
}

inline void sync(const thread_group& group, SIM_SITE) { group.sync(site); }

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
inline T reduce(const thread_block_tile<N>& tile, T value, Op op, SIM_SITE) {
    for (unsigned int offset = N / 2; offset > 0; offset /= 2) value = op(value, tile.shfl_xor(value, (int)offset, site));
    return value;
}

}  // namespace cooperative_groups
