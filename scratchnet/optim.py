"""Stochastic gradient descent (momentum, Nesterov, weight decay) and learning-rate schedules.

SGD follows ``torch.optim.SGD`` exactly (dampening 0). For each parameter p with gradient ∇p, one step is

    g  = ∇p + λ p                    weight decay λ (L2 regularisation ½λ‖p‖² added to the loss)
    v  = g            on the first step, then   v = μ v + g        momentum μ ("velocity" buffer v)
    g  = g + μ v      (Nesterov)      or         g = v              (classical momentum)
    p ← p − η g                      learning rate η

With μ = 0 this is plain gradient descent, p ← p − η (∇p + λ p). AlexNet (Krizhevsky et al. 2012) used
μ = 0.9, λ = 0.0005, η = 0.01 divided by 10 when the validation error stopped improving.

On ``cpu`` the step is NumPy, updating p and v in place. On ``gpu`` and ``sim`` it is one launch per
parameter of the fused kernel ``sgd_update`` in ``kernels/sgd.cu``, which reads p, ∇p and v once and
writes p and v once.

The schedules change only ``opt.lr``; call their ``step()`` once per epoch, after the epoch::

    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(90):
        ...  # forward, backward, opt.step() for every batch
        sched.step()
"""

from __future__ import annotations

import math

import numpy as np

# The valid range of each hyper-parameter, checked alike by SGD, the schedules and the trainer's TrainConfig.
RANGES = {
    "lr": ("a finite number > 0", lambda v: math.isfinite(v) and v > 0),
    "momentum": ("in [0, 1)", lambda v: 0 <= v < 1),  # 1 never forgets a gradient: the steps grow forever
    "weight_decay": ("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0),
    "gamma": ("in (0, 1]", lambda v: 0 < v <= 1),  # a factor that never grows the learning rate
}


def check_range(name: str, value, who: str = "") -> None:
    """Raise ValueError unless ``value`` is a number in the valid range of hyper-parameter ``name``."""
    rule, ok = RANGES[name]
    if not _is_number(value) or not ok(float(value)):
        raise ValueError(f"{who}{name} must be {rule}, got {value!r}")


def check_min_lr(min_lr, lr, who: str = "") -> None:
    """A cosine schedule's final learning rate: finite, in [0, lr]."""
    if not _is_number(min_lr) or not 0 <= float(min_lr) <= lr:
        raise ValueError(f"{who}min_lr must be a finite number in [0, lr] = [0, {lr}], got {min_lr!r}")


def check_count(name: str, value, who: str = "") -> None:
    """A count (epochs, batch size, step size, ...): an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{who}{name} must be an integer >= 1, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


class SGD:
    """SGD over ``model.params`` (all of them, or only the keys in ``params``: the others stay frozen).

    ``model`` is anything with ``params`` and ``grads`` (dicts of arrays with the same keys, read again at
    every step) and ``device``, such as :class:`scratchnet.models.Sequential`. ``lr`` may be changed between
    steps (the schedules below do).
    """

    def __init__(
        self,
        model,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        params: list[str] | None = None,
    ):
        check_range("lr", lr, "SGD: ")
        check_range("momentum", momentum, "SGD: ")
        check_range("weight_decay", weight_decay, "SGD: ")
        if nesterov and momentum == 0:
            raise ValueError("SGD: Nesterov momentum needs momentum > 0")
        all_keys = list(model.params)
        if params is None:
            params = all_keys
        unknown = [k for k in params if k not in all_keys]
        if unknown:
            raise ValueError(f"SGD: unknown parameter(s) {unknown}; the model has {all_keys}")
        self.model = model
        self.keys = list(params)  # the parameters this optimizer updates
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.velocity: dict = {}  # key -> velocity buffer on the model's device, created at the first step
        self._work = None  # cpu: one scratch buffer, as large as the largest parameter, for g

    def step(self) -> None:
        """Update every parameter in place from the gradients the last ``model.backward`` left."""
        params, grads = self.model.params, self.model.grads
        device = self.model.device
        for k in self.keys:
            p, grad = params[k], grads[k]
            first_step = self.momentum != 0 and k not in self.velocity
            if first_step:
                self.velocity[k] = device.empty(p.shape, p.dtype)
            if device.uses_kernels:
                self._step_kernel(device, p, grad, self.velocity.get(k, p), first_step)
            else:
                self._step_numpy(p, grad, self.velocity.get(k), first_step)

    def _step_numpy(self, p: np.ndarray, grad: np.ndarray, v: np.ndarray | None, first_step: bool) -> None:
        g = self._scratch(p)  # g is written here, so the layer's gradient is left untouched
        np.multiply(p, self.weight_decay, out=g)
        g += grad  # g = ∇p + λ p
        if v is not None:
            if first_step:
                v[...] = g
            else:
                v *= self.momentum
                v += g  # v = μ v + g
            if self.nesterov:
                g += self.momentum * v
            else:
                g[...] = v
        g *= self.lr
        p -= g

    def _scratch(self, p: np.ndarray) -> np.ndarray:
        """A view of the shared scratch buffer with ``p``'s shape and dtype."""
        if self._work is None or self._work.dtype != p.dtype or self._work.size < p.size:
            params = self.model.params  # built afresh on each access: read it once
            largest = max(int(np.prod(params[k].shape)) for k in self.keys)
            self._work = np.empty(max(largest, p.size), dtype=p.dtype)
        return self._work[: p.size].reshape(p.shape)

    def _step_kernel(self, device, p, grad, v, first_step: bool) -> None:
        # v is p itself when momentum is 0: the kernel then never touches it.
        kernel = device.kernel("sgd.cu", "sgd_update", p.dtype)
        n = int(np.prod(p.shape))
        args = (p, grad, v, n, self.lr, self.momentum, self.weight_decay, int(self.nesterov), int(first_step))
        kernel.launch_1d(n, args)

    # --- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Hyper-parameters and velocity buffers (host copies, keys ``"velocity.<param>"``): a flat dict."""
        state: dict = {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }
        device = self.model.device
        for k, v in self.velocity.items():
            state[f"velocity.{k}"] = np.array(device.to_host(v), copy=True)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (scalars may be 0-d arrays, as ``np.load`` gives them)."""
        missing = [k for k in ("lr", "momentum", "nesterov", "weight_decay") if k not in state]
        if missing:
            raise KeyError(f"SGD.load_state_dict: missing {missing}")
        velocity = {k.removeprefix("velocity."): v for k, v in state.items() if k.startswith("velocity.")}
        unknown = sorted(set(velocity) - set(self.keys))
        if unknown:
            raise KeyError(
                f"SGD.load_state_dict: velocity for parameters this optimizer does not update: {unknown}"
            )
        for name in ("momentum", "weight_decay"):  # a stored state obeys the ranges a new one does
            check_range(name, np.asarray(state[name]).item(), "SGD.load_state_dict: ")
        lr = np.asarray(state["lr"]).item()
        if not _is_number(lr) or not (math.isfinite(lr) and lr >= 0):  # a schedule may have ended at 0
            raise ValueError(f"SGD.load_state_dict: lr must be a finite number >= 0, got {lr!r}")
        params, device = self.model.params, self.model.device
        for k, v in velocity.items():
            if tuple(np.shape(v)) != tuple(params[k].shape):
                raise ValueError(
                    f"SGD.load_state_dict: velocity.{k} has shape {tuple(np.shape(v))}, "
                    f"the parameter has {tuple(params[k].shape)}"
                )
            if not np.isfinite(v).all():  # it would make the first step NaN: no learning rate is to blame
                raise ValueError(f"SGD.load_state_dict: velocity.{k} holds NaN/inf values")
        self.lr = float(state["lr"])
        self.momentum = float(state["momentum"])
        self.nesterov = bool(state["nesterov"])
        self.weight_decay = float(state["weight_decay"])
        self.velocity = {k: device.array(v, dtype=params[k].dtype) for k, v in velocity.items()}

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr:g}, momentum={self.momentum:g}, nesterov={self.nesterov}, "
            f"weight_decay={self.weight_decay:g}, {len(self.keys)} parameters)"
        )


class _Schedule:
    """A learning rate that depends on the epoch: ``lr_at(epoch)``; ``step()`` advances one epoch."""

    def __init__(self, optimizer: SGD):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one epoch and set ``optimizer.lr``; returns the new learning rate."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
        epoch, who = state["epoch"], f"{type(self).__name__}.load_state_dict: "
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise ValueError(f"{who}epoch must be an integer >= 0, got {epoch!r}")
        check_range("lr", np.asarray(state["base_lr"]).item(), who + "base_")
        self.epoch = int(epoch)
        self.base_lr = float(state["base_lr"])
        self.optimizer.lr = self.lr_at(self.epoch)


class StepLR(_Schedule):
    """η(epoch) = η₀ · γ^⌊epoch / step_size⌋: divide by 1/γ every ``step_size`` epochs (torch's StepLR)."""

    def __init__(self, optimizer: SGD, step_size: int, gamma: float = 0.1):
        check_count("step_size", step_size, "StepLR: ")
        check_range("gamma", gamma, "StepLR: ")
        super().__init__(optimizer)
        self.step_size = int(step_size)
        self.gamma = float(gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(_Schedule):
    """η(epoch) = η_min + (η₀ − η_min) · (1 + cos(π · epoch / total_epochs)) / 2, then η_min.

    Half a cosine from η₀ down to η_min over ``total_epochs`` (torch's CosineAnnealingLR with
    T_max = total_epochs); unlike torch it stays at η_min after ``total_epochs`` instead of rising again.
    """

    def __init__(self, optimizer: SGD, total_epochs: int, min_lr: float = 0.0):
        check_count("total_epochs", total_epochs, "CosineLR: ")
        check_min_lr(min_lr, optimizer.lr, "CosineLR: ")
        super().__init__(optimizer)
        self.total_epochs = int(total_epochs)
        self.min_lr = float(min_lr)

    def lr_at(self, epoch: int) -> float:
        progress = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2
