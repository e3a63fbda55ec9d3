// Stochastic gradient descent with momentum, Nesterov and weight decay, in one pass over a parameter.
// Used by scratchnet/optim.py (SGD.step) on the gpu and sim devices. Same arithmetic as torch.optim.SGD
// with dampening 0:
//
//   g  = grad + weight_decay * p
//   v  = g                               on the first step (the velocity buffer starts as the gradient)
//   v  = momentum * v + g                afterwards
//   g  = g + momentum * v   (Nesterov)   or   g = v   (classical momentum)
//   p -= lr * g
//
// With momentum == 0 the velocity is neither read nor written (pass any array of the right type).

// Thread mapping: one thread per parameter element i < count (a 1-D grid over the flattened parameter). Every
// element is independent: p, grad and velocity are read once and written once, so the update is fused into
// one memory pass instead of the four or five passes that separate array operations would make.
template <typename T>
__global__ void sgd_update(T* p, const T* grad, T* velocity, long long count, T lr, T momentum,
                           T weight_decay, int nesterov, int first_step) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) {
        return;
    }
    T g = grad[i] + weight_decay * p[i];
    if (momentum != T(0)) {
        T v = first_step ? g : momentum * velocity[i] + g;
        velocity[i] = v;
        g = nesterov ? g + momentum * v : v;
    }
    p[i] -= lr * g;
}
