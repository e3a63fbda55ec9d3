"""Diagnosis by evidence: learners' mistakes that no checker lists (each found by a probe, a relation or a
localisation) are named by their real cause, and correct-but-unusual code is not blamed."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet.exercises import diagnosis, run
from scratchnet.exercises.layers import _window_sum as _lrn_window_sum  # the library's, right


def _numerical_gradient_on_a_copy(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        shifted = x.copy()
        shifted[i] += h
        f_plus = f(x)  # the copy is perturbed, f sees x
        shifted[i] -= 2 * h
        grad[i] = (f_plus - f(x)) / (2 * h)
    return grad


def _numerical_gradient_restored_by_arithmetic(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        x[i] += h
        f_plus = f(x)
        x[i] -= 2 * h
        f_minus = f(x)
        x[i] += h
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def _softmax_global_max(logits, labels):
    N = len(labels)
    p = np.exp(logits - logits.max())  # the batch's maximum, not each row's
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(N), labels] -= 1
    return p / N


def _relu_at_or_above_zero(dy, x):
    return dy * (x >= 0)


def _linear_with_scalar_dbias(dy, x, weight):
    return dy @ weight.T, x.T @ dy, dy.sum()


def _loss_without_the_log(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -p[np.arange(len(labels)), labels].mean()


def _loss_of_the_wrong_entries(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[labels, np.arange(len(labels)) % logits.shape[1]].mean()


def _log_uniform_exponents_not_logged(low, high, size, rng):
    return 10 ** rng.uniform(low, high, size)


def _log_uniform_grid(low, high, size, rng):
    return np.logspace(np.log10(low), np.log10(high), size)


def _topk_by_unstable_argsort(logits, labels, k):
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def _crop_too_small(image, padding, top, left):
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    return padded[:, top : top + image.shape[1] - 1, left : left + image.shape[2]]


def _sgd_minus_grad(param, grad, velocity, lr, momentum, weight_decay):
    velocity = momentum * velocity - grad + weight_decay * param
    return param - lr * velocity, velocity


def _sgd_momentum_twice(param, grad, velocity, lr, momentum, weight_decay):
    velocity = 2 * momentum * velocity + grad + weight_decay * param
    return param - lr * velocity, velocity


def _lrn_cross_window_one_short(dy, x, size, alpha, beta, k):
    s = k + alpha * _lrn_window_sum(x * x, size // 2, (size - 1) // 2)
    y = x * s**-beta
    return dy * s**-beta - 2 * alpha * beta * x * _lrn_window_sum(dy * y / s, (size - 1) // 2, size // 2 - 1)


def _lrn_normaliser_without_k(dy, x, size, alpha, beta, k):
    s = alpha * _lrn_window_sum(x * x, size // 2, (size - 1) // 2) + 1e-3  # k forgotten
    y = x * s**-beta
    return dy * s**-beta - 2 * alpha * beta * x * _lrn_window_sum(dy * y / s, (size - 1) // 2, size // 2)


def _lrn_cross_term_only_with_flipped_sign(dy, x, size, alpha, beta, k):
    s = k + alpha * _lrn_window_sum(x * x, size // 2, (size - 1) // 2)
    y = x * s**-beta
    return 2 * alpha * beta * x * _lrn_window_sum(dy * y / s, (size - 1) // 2, size // 2)


def _maxpool_backward_one_column_short(dy, x, kernel_size, stride):
    K, S = kernel_size, stride
    N, C, OH, OW = dy.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW - 1):  # one window column short
                    window = x[n, c, oh * S : oh * S + K, ow * S : ow * S + K]
                    kh, kw = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, oh * S + kh, ow * S + kw] += dy[n, c, oh, ow]
    return dx


# exercise id, the learner's function, what the report must say, what it must not say
CASES = {
    "maxpool backward one window column short": (  # was told "`=` instead of `+=`"
        "maxpool-backward",
        _maxpool_backward_one_column_short,
        "yours is 0 where the right answer is not",
        "instead of `+=`",
    ),
    "lrn cross-channel window one channel short": (
        "lrn-backward",
        _lrn_cross_window_one_short,
        "the cross-channel term is wrong (yours differs where dy = 0, where it is the only term); "
        "the direct term dy · s^(−β) is right",
        "elements differ",
    ),
    "lrn normaliser without k": (
        "lrn-backward",
        _lrn_normaliser_without_k,
        "every term is wrong where it stands alone",
        "elements differ",
    ),
    "lrn direct term dropped and cross-channel sign flipped": (
        "lrn-backward",
        _lrn_cross_term_only_with_flipped_sign,
        "the direct term dy · s^(−β) is missing and the cross-channel term has the wrong sign",
        "elements differ",
    ),
    "numerical gradient perturbing a copy": (
        "numerical-gradient",
        _numerical_gradient_on_a_copy,
        "f never saw a perturbed x",
        "never filled in",
    ),
    "numerical gradient restored by += h; -= 2h; += h": (
        "numerical-gradient",
        _numerical_gradient_restored_by_arithmetic,
        "does not come back bit-exact",
        "modified its input",
    ),
    "softmax shifted by the batch's maximum": (
        "softmax-cross-entropy-backward",
        _softmax_global_max,
        "only in the rows whose largest logit lies far below the batch's largest",
        "overflows",
    ),
    "relu mask x >= 0": (
        "relu-backward",
        _relu_at_or_above_zero,
        "wrong only where x = 0, ReLU's kink",
        "elements differ",
    ),
    "linear dbias = dy.sum()": (
        "linear-backward",
        _linear_with_scalar_dbias,
        "dbias is a single number",
        "must be a NumPy array",
    ),
    "loss without the log": (
        "softmax-cross-entropy-forward",
        _loss_without_the_log,
        "loss: yours",
        "constant factor",
    ),
    "loss of the wrong entries": (
        "softmax-cross-entropy-forward",
        _loss_of_the_wrong_entries,
        "loss: yours",
        "constant factor",
    ),
    "log-uniform exponents not logged": (
        "log-uniform",
        _log_uniform_exponents_not_logged,
        "the exponents must be the base-10 logarithms of low and high",
        "natural logarithm",
    ),
    "log-uniform as a grid": ("log-uniform", _log_uniform_grid, "not random", "passed"),
    "top-k by np.argsort on ties": (
        "topk-accuracy",
        _topk_by_unstable_argsort,
        "kind='stable'",
        "passed",
    ),
    "sgd subtracting the gradient": (
        "sgd-step",
        _sgd_minus_grad,
        "the gradient (in the step) has the wrong sign",
        "elements differ",
    ),
    "sgd counting the momentum twice": (
        "sgd-step",
        _sgd_momentum_twice,
        "the momentum term μ · velocity (in the step) is counted twice",
        "elements differ",
    ),
    "a crop one row short": (
        "pad-and-crop",
        _crop_too_small,
        "crop is a result of the forward computation, of shape (2, 6, 7)",
        "gradient",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_real_cause_is_named(case):
    exercise_id, function, says, not_says = CASES[case]
    text = run(exercise_id, function).render()
    assert text.startswith(f"{exercise_id}: wrong"), text
    assert says in text and not_says not in text, text


def test_the_scalar_message_says_which_axes_to_keep():
    text = run("linear-backward", _linear_with_scalar_dbias).render()
    assert "sum over axis 0 only, keeping axis 1" in text, text


def test_a_gradient_shape_error_still_speaks_of_gradients():
    text = run("relu-backward", lambda dy, x: (dy * (x > 0))[:, :-1]).render()
    assert "a gradient has the shape of what it is the gradient of" in text, text


def test_correct_argsort_with_a_stable_sort_passes():
    def topk_accuracy(logits, labels, k):
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        return float(np.mean((top == labels[:, None]).any(axis=1)))

    assert run("topk-accuracy", topk_accuracy).passed


# --- the engine on its own --------------------------------------------------------------------------------
def test_localise_picks_the_smallest_region_holding_every_wrong_element():
    wrong = np.zeros((4, 5), dtype=bool)
    wrong[1, 2] = wrong[3, 0] = True
    rows = np.zeros((4, 5), dtype=bool)
    rows[[1, 3]] = True
    regions = {"in rows 1 and 3": rows, "in the odd rows and column 0": rows | (np.arange(5) == 0)}
    assert diagnosis.localise(wrong, regions).startswith("wrong only in rows 1 and 3 (2 of 20")
    wrong[0, 4] = True  # now outside both regions
    assert diagnosis.localise(wrong, regions) is None


def test_relations():
    right = np.arange(1.0, 7.0).reshape(2, 3)
    assert "= 5 × correct, and 5 = N" in diagnosis.scale_relation(5 * right, right, {"N": 5})
    assert "SIGN" in diagnosis.scale_relation(-right, right, {})
    assert diagnosis.scale_relation(right + 1, right, {}) is None
    assert "correct + 0.5" in diagnosis.offset_relation(right + 0.5, right)
    # One number fits any factor: only a named one (or −1) is a finding.
    assert diagnosis.scale_relation(np.array(0.3), np.array(2.0), {"N": 5}) is None
    assert "5 = N" in diagnosis.scale_relation(np.array(10.0), np.array(2.0), {"N": 5})


def test_term_relation():
    right, bias = np.arange(6.0).reshape(2, 3), np.array([1.0, -2.0, 0.5])
    assert diagnosis.term_relation(right - bias, right, {"the bias": bias}) == (
        "the bias is missing: yours = right − the bias"
    )
    assert "has the wrong sign" in diagnosis.term_relation(right - 2 * bias, right, {"the bias": bias})
    assert diagnosis.term_relation(right + 3 * bias, right, {"the bias": bias}).startswith(
        "the bias is scaled by 4"
    )
    assert diagnosis.term_relation(right + 3 * bias + 1, right, {"the bias": bias}) is None
    # Two independent terms wrong at once are fitted together.
    other = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    both = {"the bias": bias, "the other term": other}
    assert diagnosis.term_relation(right - bias - 2 * other, right, both) == (
        "the bias is missing and the other term has the wrong sign"
    )


def test_isolated_terms_judge_each_term_where_it_stands_alone():
    wrong = np.zeros(6, dtype=bool)
    alone = {"the first term": ("a = 0", np.arange(6) < 2), "the second term": ("b = 0", np.arange(6) >= 4)}
    assert diagnosis.isolated_terms(wrong, alone) is None
    wrong[[2, 4]] = True  # wrong where both terms count and where the second stands alone
    assert diagnosis.isolated_terms(wrong, alone).startswith(
        "the second term is wrong (yours differs where b = 0, where it is the only term); the first term is "
        "right"
    )
    wrong[0] = True
    assert diagnosis.isolated_terms(wrong, alone, ": s").endswith("the mistake is in what they share: s")
    assert diagnosis.isolated_terms(np.arange(6) == 3, alone) is None  # only where both count: no verdict


def test_wrong_values_say_where_and_what():
    x = np.linspace(-1.0, 1.0, 9)
    right = np.maximum(x, 0)
    off_threshold = np.where(x > 0.5, x, 0.0)  # a ReLU whose threshold is 0.5
    assert diagnosis.wrong_values(off_threshold, right, {"x": x}).startswith(
        "wrong exactly where 0.25 ≤ x ≤ 0.5"
    )
    ones_below = np.where(x > 0, x, 1.0)  # the other branch writes 1
    found = diagnosis.wrong_values(ones_below, right, {"x": x})
    assert (
        found.startswith("wrong exactly where x ≤ 0 (5 of 9") and "yours is 1 in every one of them" in found
    )
    sums = np.arange(1.0, 7.0)
    skipped = sums.copy()
    skipped[[1, 4]] = 0
    assert diagnosis.wrong_values(skipped, sums, {}).startswith("yours is 0 where the right answer is not")
    table = np.arange(10.0, 30.0)
    gathered, read_elsewhere = table[[0, 2, 4, 6]], table[[0, 3, 4, 7]]
    assert "hold values of table, but not the right ones" in diagnosis.wrong_values(
        read_elsewhere, gathered, {"table": table}
    )
    assert diagnosis.wrong_values(gathered + 0.5, gathered, {"table": table}) is None


def test_a_loop_one_short_is_placed_in_the_last_row():
    def conv2d_forward_one_row_short(x, weight, bias, S, P):
        F, _, KH, KW = weight.shape
        N, _, H, W = x.shape
        OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
        x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
        y = np.zeros((N, F, OH, OW))
        for oh in range(OH - 1):  # one row short
            for ow in range(OW):
                window = x_pad[:, :, oh * S : oh * S + KH, ow * S : ow * S + KW]
                y[:, :, oh, ow] = np.einsum("ncij,fcij->nf", window, weight) + bias
        return y

    text = run("conv2d-forward", conv2d_forward_one_row_short).render()
    assert "wrong exactly in the last index of axis 2, y[:, :, 4, :] (all of it" in text, text


# --- when the learner's code raises: NumPy's message in the learner's shapes (crashes are counted apart) ---
def _linear_backward_bias_over_the_wrong_axis(dy, x, weight):
    dx = dy @ weight.T
    dx += dy.sum(axis=1)  # (N,) onto (N, D)
    return dx, x.T @ dy, dy.sum(axis=0)


def _softmax_backward_axis_2(logits, labels):
    p = np.exp(logits - logits.max(axis=2, keepdims=True))
    return p


def _col2im_into_a_one_row_slice(cols_batch_first, x_shape, KH, KW, S, P):
    N, C, H, W = x_shape
    dx = np.zeros(x_shape)
    dx[:, :, :1] += np.ones((N, C, H, W))
    return dx


def _conv_forward_float_size(x, weight, bias, S, P):
    OH = (x.shape[2] + 2 * P - weight.shape[2]) / S + 1
    return np.zeros((x.shape[0], weight.shape[0], OH, OH))


RAISES = {
    "a sum over the wrong axis broadcast onto a matrix": (
        "linear-backward",
        _linear_backward_bias_over_the_wrong_axis,
        "shapes (4, 5) and (4,) are aligned from the right and must agree axis by axis (or be 1): axis 1: 5 "
        "against 4",
    ),
    "an axis that does not exist": (
        "softmax-cross-entropy-backward",
        _softmax_backward_axis_2,
        "the array has 2 axes, 0 to 1: there is no axis 2",
    ),
    "+= into a slice too small": (
        "col2im",
        _col2im_into_a_one_row_slice,
        "into a slice of shape (2, 3, 1, 5) of a value of shape (2, 3, 5, 5): axis 2: 5 against 1",
    ),
    "a size computed with /": (
        "conv2d-forward",
        _conv_forward_float_size,
        "/ makes floats, // keeps integers",
    ),
}


@pytest.mark.parametrize("case", sorted(RAISES))
def test_a_raise_is_explained_in_the_learners_shapes(case):
    exercise_id, function, says = RAISES[case]
    text = run(exercise_id, function).render()
    assert "your code raised" in text and says in text, text
    assert "numpy" not in text.split("(line ", 1)[1].split(")")[0], text  # the learner's line, not NumPy's


def test_a_product_of_mismatched_operands_names_both_sizes():
    from scratchnet.exercises import _explain_exception

    try:
        np.ones((4, 3)) @ np.ones((4, 5))
    except ValueError as error:
        text = _explain_exception(error)
    assert "in a @ b the LAST axis of a (here 3) must equal the FIRST axis of b (here 4)" in text, text
