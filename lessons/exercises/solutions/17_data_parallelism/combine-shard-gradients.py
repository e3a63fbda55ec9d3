def combine_shard_gradients(shard_grads, shard_sizes, batch_size):
    # Each shard's mean gradient, weighted by its share of the batch: sum_r (n_r / B) g_r.
    return {
        name: sum(n / batch_size * grads[name] for grads, n in zip(shard_grads, shard_sizes, strict=True))
        for name in shard_grads[0]
    }
