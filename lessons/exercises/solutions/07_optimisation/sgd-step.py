def sgd_step(param, grad, velocity, lr, momentum, weight_decay):
    """One step of SGD with momentum and weight decay (PyTorch's rule); returns (new_param, new_velocity)."""
    g = grad + weight_decay * param  # the gradient of the loss plus the decay's pull
    new_velocity = momentum * velocity + g
    return param - lr * new_velocity, new_velocity
