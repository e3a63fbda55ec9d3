"""Checkers of the training-craft lessons: top-k accuracy, the SGD step with weight decay, the padded crop
of data augmentation, the saliency map, the label remapping of class selection, log-uniform sampling."""

from __future__ import annotations

import numpy as np

from scratchnet.device import get_device
from scratchnet.exercises import register
from scratchnet.exercises._gradients import ArraySpec, Case, Mistake, check_arrays
from scratchnet.exercises.sgd import sgd_terms
from scratchnet.optim import SGD


# --- top-k accuracy (lesson 08) ----------------------------------------------------------------------
def _topk_share(logits, labels, k, ties_win=False, smallest=False) -> float:
    """The share of rows whose true class ranks below k; the variants are the usual mistakes."""
    scores = -logits if smallest else logits
    N, K = scores.shape
    true_score = scores[np.arange(N), labels][:, None]  # (N, 1)
    lower_index = np.arange(K) < labels[:, None]  # (N, K)
    ties_before = 0 if ties_win else ((scores == true_score) & lower_index).sum(axis=1)
    rank = (scores > true_score).sum(axis=1) + ties_before  # (N,)
    return float(np.mean(rank < k))


def _topk_cases():
    """(logits, labels, k, what): without ties first, so that the tie rule is judged only where it matters."""
    rng = np.random.default_rng(0)
    N, K = 60, 10
    distinct = rng.standard_normal((N, K))
    tied = rng.integers(-3, 4, size=(N, K)).astype(np.float64)  # small integers: many ties
    labels = rng.integers(0, K, size=N)
    return [(distinct, labels, 3, "logits (60, 10) without ties, k = 3")] + [
        (tied, labels, k, f"logits (60, 10) with ties, k = {k}") for k in (1, 3, 5)
    ]


def _tie_evidence(topk_accuracy, logits, labels, k) -> str | None:
    """Run the learner's function row by row: when only rows where the true class ties with another class
    are wrong, the tie rule is the cause."""
    rows = np.arange(len(labels))
    wrong = [
        n
        for n in rows
        if not np.isclose(
            float(topk_accuracy(logits[n : n + 1].copy(), labels[n : n + 1].copy(), k)),
            _topk_share(logits[n : n + 1], labels[n : n + 1], k),
        )
    ]
    tied = (logits == logits[rows, labels][:, None]).sum(axis=1) > 1  # (N,): another class has its score
    if not wrong or not tied[wrong].all():
        return None
    return (
        f"wrong only in rows where the true class ties with another class ({len(wrong)} of {tied.sum()} such "
        "rows): on a tie the lower class index ranks first, as np.argmax; np.argsort's default sort is not "
        "stable (equal values come out in any order): np.argsort(-logits, axis=1, kind='stable') keeps them "
        "in index order"
    )


@register("topk-accuracy", names=("topk_accuracy",), title="top-1 and top-5 accuracy")
def check_topk_accuracy(report, topk_accuracy):
    hint = (
        "rank of the true class t in row n = #{j : z_j > z_t} + #{j < t : z_j = z_t}; the row counts when "
        "rank < k; return the mean over rows"
    )
    for logits, labels, k, what in _topk_cases():
        yours = topk_accuracy(logits.copy(), labels.copy(), k)
        right = _topk_share(logits, labels, k)
        if isinstance(yours, np.ndarray) and yours.shape == (len(labels),):
            report.fail(f"{what}: you returned one value per row; return their mean, the share", hint)
            return
        if not np.isscalar(yours) and not (isinstance(yours, np.ndarray) and yours.ndim == 0):
            report.fail(f"{what}: return one number (a float in [0, 1]), got {type(yours).__name__}", hint)
            return
        yours = float(yours)
        if np.isclose(yours, right):
            report.ok(f"{what}: {yours:.4f}")
            continue
        known = [
            (right * len(labels), "a count, not a share: divide by the number of rows"),
            (_topk_share(logits, labels, k, smallest=True), "you took the k SMALLEST logits (argsort "
             "sorts ascending)"),
            (_topk_share(logits, labels, k + 1), f"off by one: you counted the top {k + 1}"),
            (_topk_share(logits, labels, k, ties_win=True), "ties count in the true class's favour; a tie "
             "goes to the lower class index, as argmax does"),
        ]  # fmt: skip
        reason = next((text for value, text in known if np.isclose(yours, value)), None) or _tie_evidence(
            topk_accuracy, logits, labels, k
        )
        report.fail(f"{what}: yours {yours:.4f}, right {right:.4f}" + (f": {reason}" if reason else ""), hint)
        return


# --- one SGD step with momentum and weight decay (lesson 07) -----------------------------------------
class _OneParameter:
    """The smallest model ``scratchnet.optim.SGD`` accepts: one parameter, its gradient, the cpu."""

    def __init__(self, param, grad):
        self.params, self.grads, self.device = {"p": param}, {"p": grad}, get_device("cpu")


def _library_sgd_steps(param, grads, lr, momentum, weight_decay):
    """``param`` and the velocity after one ``scratchnet.optim.SGD`` step per gradient in ``grads``."""
    model = _OneParameter(param.copy(), grads[0])
    optimizer = SGD(model, lr, momentum=momentum, weight_decay=weight_decay)
    for grad in grads:
        model.grads["p"] = grad
        optimizer.step()
    return model.params["p"], optimizer.velocity["p"]


def _sgd_cases(rng):
    param, grad, velocity = (rng.standard_normal((3, 4)) for _ in range(3))
    cases = []
    for lr, momentum, weight_decay in ((0.1, 0.9, 0.01), (0.05, 0.5, 0.1)):
        # The library's velocity after one step from `velocity` is recovered by running two steps: the first
        # leaves v = g0 + λ p0; choose g0 so that this equals the given velocity.
        p0 = param + lr * velocity  # the parameter before that first step
        g0 = velocity - weight_decay * p0
        new_param, new_velocity = _library_sgd_steps(p0, [g0, grad], lr, momentum, weight_decay)
        args = {"param": param, "grad": grad, "velocity": velocity, "lr": lr, "momentum": momentum,
                "weight_decay": weight_decay}  # fmt: skip
        cases.append(
            Case(
                f"param, grad, velocity (3, 4), lr {lr}, momentum {momentum}, weight_decay {weight_decay}",
                args,
                {"param": new_param, "velocity": new_velocity},
                terms=sgd_terms(args, new_velocity),
            )
        )
    return cases


def _sgd_variant(a, decay_in_gradient=True, dampening=False):
    g = a["grad"] + (a["weight_decay"] * a["param"] if decay_in_gradient else 0)
    velocity = a["momentum"] * a["velocity"] + (1 - a["momentum"] if dampening else 1) * g
    step = velocity if decay_in_gradient else velocity + a["weight_decay"] * a["param"]
    return {"param": a["param"] - a["lr"] * step, "velocity": velocity}


SGD_STEP = ArraySpec(
    "one step of scratchnet.optim.SGD (PyTorch's rule) with momentum μ, weight decay λ, learning rate η; "
    "returns the new (param, velocity) and leaves the inputs unchanged",
    ("param", "velocity"),
    {
        "velocity": "g = grad + λ · param;  velocity = μ · velocity + g",
        "param": "param = param − η · velocity (the NEW velocity)",
    },
    _sgd_cases,
    (
        Mistake(
            "weight decay is missing: it is added to the gradient (g = grad + λ param) before the momentum",
            lambda a: _sgd_variant({**a, "weight_decay": 0.0}),
        ),
        Mistake(
            "weight decay is applied to the step, outside the velocity (the 'decoupled' form of AdamW); "
            "PyTorch's SGD adds it to the gradient, so it is carried by the momentum too",
            lambda a: _sgd_variant(a, decay_in_gradient=False),
        ),
        Mistake(
            "the gradient is scaled by (1 − μ) (dampening); PyTorch's default, and scratchnet's, is none",
            lambda a: _sgd_variant(a, dampening=True),
        ),
        Mistake(
            "the step used the OLD velocity: update the velocity first, then move the parameter with it",
            lambda a: {"param": a["param"] - a["lr"] * a["velocity"]},
        ),
        Mistake(
            "your velocity is −η × ours: that is CS231n's convention (v = μv − η g); scratchnet, like "
            "PyTorch, keeps v = μv + g and steps p − η v",
            lambda a: {"velocity": -a["lr"] * _sgd_variant(a)["velocity"]},
        ),
    ),
)


@register("sgd-step", names=("sgd_step",), title="one SGD step with momentum and weight decay")
def check_sgd_step(report, sgd_step):
    check_arrays(report, SGD_STEP, sgd_step)


# --- a padded crop (lesson 11) -----------------------------------------------------------------------
def _padded_crop(a, mode="constant", swap=False, pad=True):
    image, padding, top, left = a["image"], a["padding"], a["top"], a["left"]
    if swap:
        top, left = left, top
    _, H, W = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)), mode=mode) if pad else image
    return {"crop": padded[:, top : top + H, left : left + W]}


def _crop_cases(rng):
    image = rng.random((2, 6, 7))  # (C, H, W), not square: swapped axes show
    cases = []
    for top, left in ((0, 3), (4, 1)):
        args = {"image": image, "padding": 2, "top": top, "left": left}
        cases.append(Case(f"image (2, 6, 7), padding 2, top {top}, left {left}", args, _padded_crop(args)))
    return cases


PAD_AND_CROP = ArraySpec(
    "pad an image (C, H, W) with `padding` zeros on every side, then cut the (C, H, W) window whose top-left "
    "corner is (top, left) in the padded image",
    ("crop",),
    {"crop": "padded = np.pad(image, ((0, 0), (p, p), (p, p)));  padded[:, top:top + H, left:left + W]"},
    _crop_cases,
    (
        Mistake(
            "top and left are swapped: top counts rows (H), left counts columns (W)",
            lambda a: _padded_crop(a, swap=True),
        ),
        Mistake(
            "the border repeats the edge pixels; RandomCrop pads with zeros (black)",
            lambda a: _padded_crop(a, mode="edge"),
        ),
        Mistake(
            "the image was not padded first: the window must be cut from the padded image",
            lambda a: _padded_crop(a, pad=False),
        ),
    ),  # fmt: skip
)


@register("pad-and-crop", names=("pad_and_crop",), title="the padded random crop, for one position")
def check_pad_and_crop(report, pad_and_crop):
    check_arrays(report, PAD_AND_CROP, pad_and_crop)


# --- the saliency map (lesson 12) --------------------------------------------------------------------
def _saliency(a, absolute=True, reduce="max", per_image=True):
    g = np.abs(a["input_gradient"]) if absolute else a["input_gradient"]
    strength = g.max(axis=1) if reduce == "max" else g.sum(axis=1)  # (N, H, W)
    if per_image:
        return {"saliency": strength / strength.max(axis=(1, 2), keepdims=True)}
    return {"saliency": strength / strength.max()}


def _saliency_cases(rng):
    gradient = rng.standard_normal((3, 2, 5, 4))
    gradient[1] *= 10  # the images differ in scale: a batch-wide normalisation shows
    args = {"input_gradient": gradient}
    return [Case("input_gradient (3, 2, 5, 4)", args, _saliency(args))]


SALIENCY = ArraySpec(
    "saliency (N, H, W): the largest |∂ score / ∂ pixel| over the channels, scaled to a maximum of 1 per "
    "image",
    ("saliency",),
    {"saliency": "s = np.abs(g).max(axis=1); s / s.max(axis=(1, 2), keepdims=True)"},
    _saliency_cases,
    (
        Mistake(
            "the absolute value is missing: a large negative gradient matters as much as a positive one",
            lambda a: _saliency(a, absolute=False),
        ),
        Mistake(
            "summed over the channels; take the largest magnitude (Simonyan et al. 2014)",
            lambda a: _saliency(a, reduce="sum"),
        ),
        Mistake(
            "scaled by the maximum over the whole batch; scale each image by its own maximum",
            lambda a: _saliency(a, per_image=False),
        ),
    ),  # fmt: skip
)


@register("saliency-map", names=("saliency_map",), title="a saliency map from the input gradient")
def check_saliency_map(report, saliency_map):
    check_arrays(report, SALIENCY, saliency_map)


# --- keeping some classes, labels remapped (lesson 15) -----------------------------------------------
def _remap(a, sort_classes=False, keep_labels=False):
    labels, classes = a["labels"], list(a["classes"])
    order = sorted(classes) if sort_classes else classes
    indices = np.flatnonzero(np.isin(labels, classes))
    new = {c: i for i, c in enumerate(order)}
    new_labels = labels[indices] if keep_labels else np.array([new[c] for c in labels[indices]], np.int64)
    return {"indices": indices, "new_labels": new_labels}


def _remap_cases(rng):
    labels = rng.integers(0, 10, size=40)
    cases = []
    for classes in ([5, 6, 7, 8, 9], [7, 2, 5]):
        args = {"labels": labels, "classes": classes}
        cases.append(Case(f"labels (40,) in 0..9, classes {classes}", args, _remap(args)))
    return cases


REMAP = ArraySpec(
    "keep the images whose label is in `classes`: their indices (ascending) and their new labels, the "
    "position of the old label in `classes` (classes [7, 2, 5]: 7 -> 0, 2 -> 1, 5 -> 2)",
    ("indices", "new_labels"),
    {
        "indices": "np.flatnonzero(np.isin(labels, classes))",
        "new_labels": "a lookup table: table[old] = position of old in classes; table[labels[indices]]",
    },
    _remap_cases,
    (
        Mistake(
            "the labels keep their old values: the loss needs labels 0..k−1 for k classes",
            lambda a: _remap(a, keep_labels=True),
        ),
        Mistake(
            "the classes were sorted first; the new label is the position in `classes` AS GIVEN",
            lambda a: _remap(a, sort_classes=True),
        ),
        Mistake(
            "a boolean mask instead of the indices: np.flatnonzero(mask) turns one into the other",
            lambda a: {"indices": np.isin(a["labels"], a["classes"])},
        ),
    ),  # fmt: skip
)


@register("remap-labels", names=("remap_labels",), title="keep some classes, number them 0..k-1")
def check_remap_labels(report, remap_labels):
    check_arrays(report, REMAP, remap_labels)


# --- log-uniform sampling (lesson 16) ----------------------------------------------------------------
def _range_relation(samples: np.ndarray, low: float, high: float) -> str:
    """Which transform of the bounds the samples' range matches: a relation, not a list of mistakes."""
    ranges = {
        "10 ** (a number between low and high): the exponents must be the base-10 logarithms of low and "
        "high, not low and high themselves": (10.0**low, 10.0**high),
        "np.exp of base-10 exponents: 10 ** undoes np.log10, np.exp undoes np.log": (
            np.exp(np.log10(low)),
            np.exp(np.log10(high)),
        ),
        "10 ** of natural-log exponents: 10 ** undoes np.log10, np.exp undoes np.log": (
            10.0 ** np.log(low),
            10.0 ** np.log(high),
        ),
    }
    span = f"from {samples.min():.3g} to {samples.max():.3g}"
    for cause, (bottom, top) in ranges.items():
        ends = np.log([bottom, top])
        reach = 0.05 * (ends[1] - ends[0])  # the samples come within 5% (in log) of both ends
        logs = np.log(samples)
        if logs.min() >= ends[0] - 1e-9 and logs.max() <= ends[1] + 1e-9 and logs.min() < ends[0] + reach:
            if logs.max() > ends[1] - reach:
                return f"{span}, the range of {cause}"
    return span


@register("log-uniform", names=("log_uniform",), title="log-uniform samples for a random search")
def check_log_uniform(report, log_uniform):
    hint = "10 ** rng.uniform(np.log10(low), np.log10(high), size)"
    low, high, size = 1e-4, 1.0, 20_000
    samples = log_uniform(low, high, size, np.random.default_rng(0))
    if not isinstance(samples, np.ndarray) or samples.shape != (size,):
        got = getattr(samples, "shape", type(samples).__name__)
        report.fail(f"log_uniform(1e-4, 1, {size}, rng) must return shape ({size},), got {got}", hint)
        return
    if samples.min() < low or samples.max() > high:
        report.fail(f"samples fall outside [1e-4, 1]: {_range_relation(samples, low, high)}", hint)
        return
    other_seed = log_uniform(low, high, size, np.random.default_rng(1))
    if np.array_equal(samples, other_seed) or np.all(np.diff(samples) >= 0):
        report.fail(
            "not random: the samples are "
            + ("the same for two different rng seeds" if np.array_equal(samples, other_seed) else "sorted")
            + ", a fixed grid (np.logspace gives evenly spaced exponents, not random draws); draw the "
            "exponents from the rng you are given",
            hint,
        )
        return
    decades = np.histogram(np.log10(samples), bins=4, range=(-4, 0))[0] / size  # share in each decade
    if decades[-1] > 0.85:
        report.fail(
            f"uniform between 1e-4 and 1, not log-uniform: {decades[-1]:.0%} of the samples lie in the top "
            f"decade [0.1, 1] and {decades[0]:.2%} in [1e-4, 1e-3]; each decade should get a quarter",
            hint,
        )
        return
    if decades.min() < 0.01:
        report.fail(
            f"the samples miss whole decades: from {samples.min():.3g} to {samples.max():.3g}, shares "
            f"{np.round(decades, 3)} (np.exp of a base-10 exponent, or 10 ** of a natural one?)",
            hint,
        )
        return
    if np.abs(decades - 0.25).max() > 0.02:
        report.fail(f"each decade should hold a quarter of the samples: {np.round(decades, 3)}", hint)
        return
    report.ok(f"each decade holds a quarter of the samples: {np.round(decades, 3)}")
    if not np.array_equal(samples, log_uniform(low, high, size, np.random.default_rng(0))):
        report.fail("two calls with the same seeded rng differ: draw from the rng you are given", hint)
        return
    report.ok("reproducible: the same rng seed gives the same samples")
