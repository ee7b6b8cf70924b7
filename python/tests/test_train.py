"""Training bindings: Optimizer over a Model, LRSchedule, clip_grad_norm, losses against numpy formulas."""

import math

import numpy as np
import pytest

import elmneuron
from conftest import sparse_dense_input


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def bce(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


# ---- Optimizer


def test_sgd_step_updates_trainable_parameters_only(small_config, rng):
    m = elmneuron.Model(small_config, seed=1, dtype="float64")
    before = {k: v.copy() for k, v in m.state_dict().items()}
    m.forward(sparse_dense_input(rng, (2, 4, 5)))
    grads = m.backward(rng.standard_normal((2, 4, 3)))
    opt = elmneuron.Optimizer(m, "sgd", lr=0.1)
    opt.step(m, grads)
    after = m.state_dict()
    for name, value in before.items():
        if name in grads:
            np.testing.assert_allclose(after[name], value - 0.1 * grads[name], rtol=0, atol=1e-15)
        else:
            np.testing.assert_array_equal(after[name], value)  # frozen: tau_s, _proto_tau_m
    assert opt.steps == 1 and opt.kind == "sgd" and opt.lr == 0.1
    # lr given to step overrides the configured rate; a missing gradient skips that parameter.
    partial = {"w_y.bias": np.ones(3)}
    snapshot = {k: v.copy() for k, v in after.items()}
    opt.step(m, partial, lr=0.5)
    np.testing.assert_allclose(m.parameter("w_y.bias"), snapshot["w_y.bias"] - 0.5, atol=1e-15)
    np.testing.assert_array_equal(m.parameter("w_y.weight"), snapshot["w_y.weight"])


def test_optimizer_errors(small_config):
    m32 = elmneuron.Model(small_config, dtype="float32")
    m64 = elmneuron.Model(small_config, dtype="float64")
    opt = elmneuron.Optimizer(m32, "adam")
    with pytest.raises(elmneuron.Error) as info:
        opt.step(m64, {})
    assert info.value.field == "model"
    with pytest.raises(elmneuron.Error) as info:
        opt.step(m32, {"nope": np.zeros(1)})
    assert "w_y.bias" in info.value.expected
    with pytest.raises(elmneuron.Error) as info:
        opt.step(m32, {"tau_s": np.zeros(5)})  # frozen
    assert info.value.field == "grads[tau_s]"
    with pytest.raises(elmneuron.Error) as info:
        opt.step(m32, {"w_y.bias": np.zeros(4)})
    assert info.value.field == "grads[w_y.bias]"
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.Optimizer(m32, "rmsprop")
    assert info.value.field == "optimizer"
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.Optimizer(m32, "adam", betas=(1.5, 0.9))
    assert info.value.field == "beta1"


def test_step_after_update_needs_new_forward(small_config, rng):
    m = elmneuron.Model(small_config, seed=3)
    x = sparse_dense_input(rng, (1, 3, 5), dtype=np.float32)
    opt = elmneuron.Optimizer(m, "adam", lr=1e-2)
    y = m.forward(x)
    opt.step(m, m.backward(np.ones_like(y)))
    with pytest.raises(elmneuron.Error):
        m.backward(np.ones_like(y))


def test_optimizer_state_round_trip(small_config, rng):
    x = sparse_dense_input(rng, (2, 5, 5))
    dy = rng.standard_normal((2, 5, 3))

    def train(model, opt, steps):
        for _ in range(steps):
            model.forward(x)
            opt.step(model, model.backward(dy))

    a = elmneuron.Model(small_config, seed=8, dtype="float64")
    opt_a = elmneuron.Optimizer(a, "adamw", lr=1e-2, weight_decay=0.01)
    train(a, opt_a, 2)
    tensors, metadata = opt_a.state_dict()
    assert metadata["optim.kind"] == "adamw" and int(tensors["optim.step"][0]) == 2

    b = elmneuron.Model(small_config, seed=0, dtype="float64")
    b.load_state_dict(a.state_dict())
    opt_b = elmneuron.Optimizer(b, "adamw", lr=1e-2, weight_decay=0.01)
    opt_b.load_state_dict(tensors, metadata)
    train(a, opt_a, 2)
    train(b, opt_b, 2)
    # Not bitwise: see conftest.assert_grads_close.
    np.testing.assert_allclose(a.parameters(), b.parameters(), rtol=1e-12, atol=1e-14)
    with pytest.raises(elmneuron.Error):
        elmneuron.Optimizer(b, "sgd").load_state_dict(tensors, metadata)


def test_training_reduces_the_loss(rng):
    cfg = elmneuron.ModelConfig(num_input=4, num_output=1, num_memory=6, model_version="v2")
    m = elmneuron.Model(cfg, seed=2, dtype="float32")
    x = sparse_dense_input(rng, (8, 20, 4), density=0.5, dtype=np.float32)
    target = np.cumsum(x.sum(axis=2, keepdims=True), axis=1).astype(np.float32) * 0.1
    opt = elmneuron.Optimizer(m, "adam", lr=1e-2)
    schedule = elmneuron.LRSchedule("cosine", base_lr=1e-2, total_steps=60)
    losses = []
    for step in range(60):
        y = m.forward(x)
        loss, dy = elmneuron.mse(y, target)
        losses.append(loss)
        grads = m.backward(dy)
        elmneuron.clip_grad_norm(grads, 1.0)
        opt.step(m, grads, lr=schedule(step))
    assert losses[-1] < 0.5 * losses[0]


# ---- schedule and clipping


def test_lr_schedule():
    s = elmneuron.LRSchedule("cosine", base_lr=0.1, eta_min=0.01, total_steps=10)
    for step in [0, 3, 10, 15]:
        expected = 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * step / 10)) / 2
        assert s.at(step) == pytest.approx(expected, rel=1e-15)
    assert elmneuron.LRSchedule(base_lr=0.3)(7) == 0.3
    with pytest.raises(elmneuron.Error):
        s.at(-1)
    with pytest.raises(elmneuron.Error):
        elmneuron.LRSchedule("linear")


def test_clip_grad_norm_in_place(rng):
    grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    original = {k: v.copy() for k, v in grads.items()}
    norm = math.sqrt(sum(float(np.sum(v * v)) for v in original.values()))
    returned = elmneuron.clip_grad_norm(grads, 0.5)
    assert returned == pytest.approx(norm, rel=1e-14)
    scale = 0.5 / (norm + 1e-6)
    for k in grads:
        np.testing.assert_allclose(grads[k], original[k] * scale, rtol=1e-14)
    # Below the bound: unchanged.
    small = {"a": np.full(2, 1e-3, dtype=np.float32)}
    elmneuron.clip_grad_norm(small, 1.0)
    np.testing.assert_array_equal(small["a"], np.full(2, 1e-3, dtype=np.float32))
    with pytest.raises(elmneuron.Error):
        elmneuron.clip_grad_norm({"a": np.zeros(2), "b": np.zeros(2, dtype=np.float32)}, 1.0)
    with pytest.raises(elmneuron.Error):
        elmneuron.clip_grad_norm({"a": np.zeros(4)[::2]}, 1.0)


# ---- losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_losses(rng, dtype):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    y = rng.random((2, 3, 4)).astype(dtype)
    loss, grad = elmneuron.mse(x, y)
    assert grad.dtype == dtype and grad.shape == x.shape
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    assert loss == pytest.approx(np.mean((x64 - y64) ** 2), rel=1e-12)
    np.testing.assert_allclose(grad, 2 * (x64 - y64) / x.size, rtol=1e-6)
    loss, grad = elmneuron.bce_with_logits(x, y)
    assert loss == pytest.approx(np.mean(bce(x64, y64)), rel=1e-12)
    np.testing.assert_allclose(grad, (sigmoid(x64) - y64) / x.size, rtol=1e-6)
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.mse(x, y[:, :2])
    assert info.value.field == "targets"


def test_cross_entropy_and_accuracy(rng):
    y = rng.standard_normal((3, 4, 5))
    labels = np.array([0, 4, 2])
    loss, dy = elmneuron.cross_entropy_last_step(y, labels)
    z = y[:, -1, :]
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    assert loss == pytest.approx(-np.mean(logp[np.arange(3), labels]), rel=1e-12)
    expected = np.zeros_like(y)
    expected[:, -1, :] = (np.exp(logp) - np.eye(5)[labels]) / 3
    np.testing.assert_allclose(dy, expected, rtol=1e-12, atol=1e-15)
    acc = elmneuron.last_step_accuracy(y, labels)
    assert acc == pytest.approx(np.mean(np.argmax(z, axis=1) == labels))
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.cross_entropy_last_step(y, np.array([0, 5, 1]))
    assert info.value.field == "labels[1]"
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.cross_entropy_last_step(y, np.array([0, 1]))
    assert info.value.field == "labels"


def test_neuronio_loss(rng):
    B, T = 2, 6
    y = rng.standard_normal((B, T, 3))
    spike = (rng.random((B, T)) < 0.3).astype(np.float64)
    soma = rng.standard_normal((B, T))
    for burn_in in [0, 2]:
        loss, dy = elmneuron.neuronio_loss(y, spike, soma, burn_in=burn_in)
        s = slice(burn_in, None)
        expected = 0.5 * np.mean(bce(y[:, s, 0], spike[:, s])) + 0.5 * np.mean((y[:, s, 1] - soma[:, s]) ** 2)
        assert loss == pytest.approx(expected, rel=1e-12)
        assert np.all(dy[:, :burn_in] == 0) and np.all(dy[..., 2] == 0)
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.neuronio_loss(y, spike[:, :3], soma)
    assert info.value.field == "spike"
