"""Checker of the SGD-with-momentum exercise (``lessons/exercises/sgd_momentum.py``)."""

from __future__ import annotations

from scratchnet.exercises import register
from scratchnet.exercises._gradients import ArraySpec, Case, Mistake, check_arrays


def _step(param, grad, velocity, lr, momentum):
    velocity = momentum * velocity + grad
    return param - lr * velocity, velocity


def sgd_terms(args: dict, new_velocity) -> dict[str, dict]:
    """The named terms of an SGD step, for the missing-term relation: those of the new velocity, and each of
    them again as it enters the new param (times −η), with the whole step."""
    terms = {
        "the momentum term μ · velocity": args["momentum"] * args["velocity"],
        "the gradient": args["grad"],
    }
    if args.get("weight_decay"):
        terms["the weight decay λ · param"] = args["weight_decay"] * args["param"]
    lr = args["lr"]
    in_step = {f"{name} (in the step)": -lr * term for name, term in terms.items()}
    return {"velocity": terms, "param": in_step | {"the step η · velocity": -lr * new_velocity}}


def _cases(rng):
    param, grad, velocity = (rng.standard_normal(5) for _ in range(3))
    args = {"param": param, "grad": grad, "velocity": velocity, "lr": 0.1, "momentum": 0.9}
    new_param, new_velocity = _step(param, grad, velocity, 0.1, 0.9)
    return [
        Case(
            "param, grad, velocity (5,), lr 0.1, momentum 0.9",
            args,
            {"param": new_param, "velocity": new_velocity},
            terms=sgd_terms(args, new_velocity),
        )
    ]


SGD_MOMENTUM = ArraySpec(
    "one step of SGD with momentum μ, learning rate η, as PyTorch and scratchnet.optim.SGD do it; returns "
    "the new (param, velocity) and leaves the inputs unchanged",
    ("param", "velocity"),
    {
        "velocity": "velocity = μ · velocity + grad",
        "param": "param = param − η · velocity (the NEW velocity)",
    },
    _cases,
    (
        Mistake(
            "your velocity is −η × ours: that is CS231n's convention (v = μv − η g, then p = p + v); "
            "scratchnet, like PyTorch, keeps v = μv + g and steps p − η v (equal steps while η is fixed)",
            lambda a: {"velocity": a["momentum"] * a["velocity"] - a["lr"] * a["grad"]},
        ),
        Mistake(
            "the step used the OLD velocity: update the velocity first, then move the parameter with it",
            lambda a: {"param": a["param"] - a["lr"] * a["velocity"]},
        ),
        Mistake(
            "the step ignores the velocity (plain SGD, param − η grad)",
            lambda a: {"param": a["param"] - a["lr"] * a["grad"]},
        ),
        Mistake(
            "the sign: a descent step moves AGAINST the gradient",
            lambda a: {"param": a["param"] + a["lr"] * (a["momentum"] * a["velocity"] + a["grad"])},
        ),
    ),
)


@register("sgd-momentum", names=("sgd_momentum_step",), title="one SGD step with momentum")
def check_sgd_momentum(report, sgd_momentum_step):
    check_arrays(report, SGD_MOMENTUM, sgd_momentum_step)
