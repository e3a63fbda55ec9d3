"""SGD and the learning-rate schedules, against torch.optim as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet.device import get_device
from scratchnet.gradcheck import relative_error
from scratchnet.optim import SGD, CosineLR, StepLR
from scratchnet.testing import DEVICES

SHAPES = {"conv.W": (3, 2, 3, 3), "conv.b": (3,), "fc.W": (7, 5)}
LRS = [0.1, 0.1, 0.05, 0.05, 0.01]  # changed between steps, as a schedule does
HYPER = [
    {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    {"momentum": 0.0, "nesterov": False, "weight_decay": 1e-2},
    {"momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
    {"momentum": 0.9, "nesterov": False, "weight_decay": 5e-4},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    {"momentum": 0.5, "nesterov": True, "weight_decay": 0.0},
]


class ParamModel:
    """What SGD reads from a model: ``params`` and ``grads`` (same keys) and ``device``."""

    def __init__(self, device: str, params: dict[str, np.ndarray]):
        self.device = get_device(device)
        self.params = {k: self.device.array(v.copy()) for k, v in params.items()}  # never alias the caller
        self.grads = {k: self.device.zeros(v.shape, v.dtype) for k, v in params.items()}

    def set_grads(self, grads: dict[str, np.ndarray]) -> None:
        for k, g in grads.items():
            self.grads[k][...] = self.device.array(g)

    def host_params(self) -> dict[str, np.ndarray]:
        return {k: self.device.to_host(v).copy() for k, v in self.params.items()}


def problem(dtype=np.float64, steps: int = len(LRS), seed: int = 0):
    """Initial parameters and one random gradient per step."""
    rng = np.random.default_rng(seed)
    init = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()} for _ in range(steps)]
    return init, grads


def run_ours(device, init, grads, lrs=LRS, **hyper) -> dict[str, np.ndarray]:
    model = ParamModel(device, init)
    opt = SGD(model, lrs[0], **hyper)
    for lr, g in zip(lrs, grads, strict=True):
        opt.lr = lr
        model.set_grads(g)
        opt.step()
    return model.host_params()


def run_torch(init, grads, lrs=LRS, **hyper) -> dict[str, np.ndarray]:
    torch = pytest.importorskip("torch")
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    opt = torch.optim.SGD(list(tensors.values()), lr=lrs[0], **hyper)
    for lr, g in zip(lrs, grads, strict=True):
        opt.param_groups[0]["lr"] = lr
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hyper", HYPER, ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items()))
def test_sgd_matches_torch_float64(device, hyper):
    init, grads = problem(np.float64)
    ours, ref = run_ours(device, init, grads, **hyper), run_torch(init, grads, **hyper)
    for k in SHAPES:
        assert relative_error(ours[k], ref[k]) < 1e-13, k
        assert not np.array_equal(ours[k], init[k])  # it did move


@pytest.mark.parametrize("device", DEVICES)
def test_sgd_matches_torch_float32(device):
    hyper = {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
    init, grads = problem(np.float32)
    ours, ref = run_ours(device, init, grads, **hyper), run_torch(init, grads, **hyper)
    for k in SHAPES:
        assert ours[k].dtype == np.float32
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-5, atol=1e-6)


def test_a_wrong_update_is_caught():
    """The comparison can fail: classical momentum where Nesterov was asked for is far from torch."""
    init, grads = problem(np.float64)
    ref = run_torch(init, grads, momentum=0.9, nesterov=True)
    wrong = run_ours("cpu", init, grads, momentum=0.9, nesterov=False)
    assert relative_error(wrong["fc.W"], ref["fc.W"]) > 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_step_leaves_gradients_alone_and_updates_only_chosen_params(device):
    init, grads = problem(np.float64, steps=1)
    model = ParamModel(device, init)
    model.set_grads(grads[0])
    SGD(model, 0.1, momentum=0.9, weight_decay=0.1, params=["fc.W"]).step()
    after = model.host_params()
    np.testing.assert_array_equal(after["conv.W"], init["conv.W"])  # frozen
    np.testing.assert_array_equal(after["conv.b"], init["conv.b"])
    np.testing.assert_allclose(after["fc.W"], init["fc.W"] - 0.1 * (grads[0]["fc.W"] + 0.1 * init["fc.W"]))
    for k, g in grads[0].items():
        np.testing.assert_array_equal(model.device.to_host(model.grads[k]), g)


@pytest.mark.parametrize("device", DEVICES)
def test_state_dict_resumes_exactly(device):
    """2 steps, save, load into a fresh optimizer, 3 more steps == 5 steps without a break."""
    hyper = {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
    init, grads = problem(np.float64)
    straight = run_ours(device, init, grads, **hyper)

    model = ParamModel(device, init)
    opt = SGD(model, LRS[0], **hyper)
    for lr, g in zip(LRS[:2], grads[:2], strict=True):
        opt.lr = lr
        model.set_grads(g)
        opt.step()
    # as np.load gives it back: scalars become 0-d arrays
    saved = {k: np.asarray(v) for k, v in opt.state_dict().items()}
    assert set(saved) == {"lr", "momentum", "nesterov", "weight_decay"} | {f"velocity.{k}" for k in SHAPES}

    resumed = ParamModel(device, model.host_params())
    opt2 = SGD(resumed, 123.0)  # hyper-parameters come from the state
    opt2.load_state_dict(saved)
    assert (opt2.momentum, opt2.nesterov, opt2.weight_decay) == (0.9, True, 5e-4)
    for lr, g in zip(LRS[2:], grads[2:], strict=True):
        opt2.lr = lr
        resumed.set_grads(g)
        opt2.step()
    for k, v in resumed.host_params().items():
        np.testing.assert_array_equal(v, straight[k])


def test_state_dict_holds_copies():
    init, grads = problem(np.float64, steps=2)
    model = ParamModel("cpu", init)
    opt = SGD(model, 0.1, momentum=0.9)
    model.set_grads(grads[0])
    opt.step()
    state = opt.state_dict()
    saved = state["velocity.fc.W"].copy()
    model.set_grads(grads[1])
    opt.step()
    np.testing.assert_array_equal(state["velocity.fc.W"], saved)  # a snapshot, not the live buffer
    assert not np.array_equal(opt.velocity["fc.W"], saved)


def test_bad_arguments_are_named():
    model = ParamModel("cpu", problem(np.float64, steps=0)[0])
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        SGD(model, -0.1)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        SGD(model, 0.1, momentum=-0.9)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        SGD(model, 0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['fc9.W'\]"):
        SGD(model, 0.1, params=["fc9.W"])
    opt = SGD(model, 0.1, momentum=0.9)
    state = {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}
    with pytest.raises(ValueError, match=r"velocity.fc.W has shape \(5, 7\), the parameter has \(7, 5\)"):
        opt.load_state_dict(state | {"velocity.fc.W": np.zeros((5, 7))})
    with pytest.raises(KeyError, match="fc9.W"):
        opt.load_state_dict(state | {"velocity.fc9.W": np.zeros(3)})


# --- schedules ----------------------------------------------------------------------------------------
def schedule_lrs(make_ours, make_torch, epochs: int) -> tuple[list[float], list[float]]:
    """Learning rates at epochs 0..epochs from our schedule and torch's, stepped once per epoch."""
    torch = pytest.importorskip("torch")
    ours_opt = SGD(ParamModel("cpu", {"w": np.zeros(1)}), lr=0.1)
    ours = make_ours(ours_opt)
    torch_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref = make_torch(torch_opt)
    ours_lrs, ref_lrs = [ours_opt.lr], [torch_opt.param_groups[0]["lr"]]
    for _ in range(epochs):
        torch_opt.step()  # torch warns when the schedule steps before the optimizer
        ref.step()
        ours.step()
        ours_lrs.append(ours_opt.lr)
        ref_lrs.append(torch_opt.param_groups[0]["lr"])
    return ours_lrs, ref_lrs


def test_step_lr_matches_torch():
    torch = pytest.importorskip("torch")
    ours, ref = schedule_lrs(
        lambda o: StepLR(o, step_size=3, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
        epochs=10,
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert ours[2] == 0.1 and ours[3] == 0.05 and ours[9] == pytest.approx(0.0125)


def test_cosine_lr_matches_torch():
    torch = pytest.importorskip("torch")
    ours, ref = schedule_lrs(
        lambda o: CosineLR(o, total_epochs=8, min_lr=1e-3),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8, eta_min=1e-3),
        epochs=8,
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert ours[0] == 0.1 and ours[-1] == pytest.approx(1e-3)


def test_cosine_stays_at_min_lr_after_the_end():
    opt = SGD(ParamModel("cpu", {"w": np.zeros(1)}), lr=0.1)
    sched = CosineLR(opt, total_epochs=4, min_lr=0.01)
    lrs = [sched.step() for _ in range(7)]
    assert lrs[3:] == [pytest.approx(0.01)] * 4
    assert lrs[0] > lrs[1] > lrs[2] > lrs[3]


@pytest.mark.parametrize(
    "make", [lambda o: StepLR(o, 2, 0.1), lambda o: CosineLR(o, 10)], ids=["step", "cosine"]
)
def test_schedule_state_dict_resumes(make):
    opt = SGD(ParamModel("cpu", {"w": np.zeros(1)}), lr=0.1)
    sched = make(opt)
    for _ in range(3):
        sched.step()
    state, lr_when_saved = sched.state_dict(), opt.lr
    expected = [sched.step() for _ in range(3)]

    opt2 = SGD(ParamModel("cpu", {"w": np.zeros(1)}), lr=0.1)
    sched2 = make(opt2)
    sched2.load_state_dict(state)
    assert opt2.lr == lr_when_saved != 0.1
    assert [sched2.step() for _ in range(3)] == expected


def test_schedules_refuse_bad_arguments():
    opt = SGD(ParamModel("cpu", {"w": np.zeros(1)}), lr=0.1)
    with pytest.raises(ValueError, match="step_size must be an integer >= 1"):
        StepLR(opt, 0)
    with pytest.raises(ValueError, match="total_epochs must be an integer >= 1"):
        CosineLR(opt, 0)


BAD_HYPERPARAMETERS = [
    ("lr", dict(lr=0.0)),
    ("lr", dict(lr=float("inf"))),
    ("lr", dict(lr=float("nan"))),
    ("momentum", dict(momentum=float("nan"))),
    ("momentum", dict(momentum=1.0)),
    ("momentum", dict(momentum=5.0)),
    ("weight_decay", dict(weight_decay=float("nan"))),
    ("weight_decay", dict(weight_decay=-1.0)),
    ("weight_decay", dict(weight_decay=float("inf"))),
]


@pytest.mark.parametrize("name, bad", BAD_HYPERPARAMETERS, ids=lambda v: str(v))
def test_sgd_refuses_values_outside_the_valid_ranges(name, bad):
    with pytest.raises(ValueError, match=f"SGD: {name} must be"):
        SGD(ParamModel("cpu", {"w": np.zeros(1)}), **({"lr": 0.1} | bad))


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan"), 1.5, float("inf")])
def test_step_schedule_refuses_a_gamma_outside_0_1(gamma):
    with pytest.raises(ValueError, match=r"StepLR: gamma must be in \(0, 1\]"):
        StepLR(SGD(ParamModel("cpu", {"w": np.zeros(1)}), lr=0.1), 1, gamma)


@pytest.mark.parametrize("min_lr", [-0.01, float("nan"), 0.2, float("inf")])
def test_cosine_schedule_refuses_a_min_lr_outside_0_lr(min_lr):
    with pytest.raises(ValueError, match=r"CosineLR: min_lr must be a finite number in \[0, lr\]"):
        CosineLR(SGD(ParamModel("cpu", {"w": np.zeros(1)}), lr=0.1), 3, min_lr)
