"""Our model against the published one on randomly drawn configurations (float64 and float32).

The golden files fix a few configurations; this draws many more (v1 and v2, every routing, 0-3 hidden layers,
ReLU and SiLU, Δt, λ, τ bounds, learned τ_m, several branches with one or many synapses) and compares outputs
and gradients with bench/peer_pytorch.py, the transcription of the published code that reproduces every
golden file (tests/bench/test_peer.py). Parameters are moved off their initial values as in the golden cases,
and further: τ_s differs from synapse to synapse (v1, also inside a branch) and τ_b from branch to branch (v2),
which the published classes compute although their constructors never set it. Both precisions are checked
against golden/README.md's bounds; float32 also against the published code's own float32 error on the case.

Needs Debian's python3-torch (scripts/install-deps.sh --peer) and the elmneuron module on PYTHONPATH.
"""
import copy
import importlib.util
import json
import math
import os

import numpy as np
import pytest
import torch

import elmneuron

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("peer_pytorch", os.path.join(ROOT, "bench", "peer_pytorch.py"))
peer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peer)

CASES = 40
# golden/README.md's bounds (output, gradients); as there, the reference is computed in float64 from parameters
# and inputs that float32 holds exactly.
TOLERANCE = {"float64": (1e-10, 1e-10), "float32": (1e-5, 1e-4)}


def draw_config(rng):
    """A published-constructor config, every key drawn or left at its default."""
    version = "v1" if rng.random() < 0.5 else "v2"
    num_input = int(rng.integers(1, 40))
    cfg = {"num_input": num_input, "num_output": int(rng.integers(1, 6)), "num_memory": int(rng.integers(1, 24))}
    routing = rng.choice(["none", "random_routing", "neuronio_routing"])
    if routing == "none":
        if rng.random() < 0.5 and num_input > 1:  # branches of several synapses on the inputs in order
            divisors = [d for d in range(2, num_input + 1) if num_input % d == 0]
            per = int(rng.choice(divisors))
            cfg["num_branch"], cfg["num_synapse_per_branch"] = num_input // per, per
    else:
        cfg["input_to_synapse_routing"] = str(routing)
        cfg["num_branch"] = int(rng.integers(1, 12))
        lowest = math.ceil(num_input / cfg["num_branch"]) if routing == "neuronio_routing" else 1
        cfg["num_synapse_per_branch"] = int(rng.integers(lowest, lowest + 8))
    cfg["mlp_num_layers"] = int(rng.integers(0, 4))
    if rng.random() < 0.6:
        cfg["mlp_hidden_size"] = int(rng.integers(1, 40))
    if rng.random() < 0.5:
        cfg["mlp_activation"] = "silu"
    if rng.random() < 0.5:
        cfg["lambda_value"] = float(rng.uniform(0.5, 8))
    if rng.random() < 0.5:
        cfg["delta_t"] = float(rng.uniform(0.2, 12))
    if rng.random() < 0.5:
        lo = float(rng.uniform(0.5, 5))
        cfg["memory_tau_min"], cfg["memory_tau_max"] = lo, float(lo + rng.uniform(1, 300))
    if rng.random() < 0.5:
        cfg["learn_memory_tau"] = True
    if rng.random() < 0.3:
        cfg["tau_s_value" if version == "v1" else "tau_b_value"] = float(rng.uniform(1, 150))
    return cfg, version


_rng = np.random.default_rng(20261206)
CONFIGS = [draw_config(_rng) for _ in range(CASES)]  # (config, version), drawn once


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape
    assert np.all(np.isfinite(ours))
    den = np.linalg.norm(ref)
    return np.linalg.norm(ours - ref) / den if den > 0 else np.linalg.norm(ours - ref)


def published_case(index):
    """Case `index`: config, version, the published model (float64, gradients of the loss set), input X, loss
    weights R and output y, with loss = sum(y * R)."""
    cfg, version = CONFIGS[index]
    torch.manual_seed(index)  # the published init and random routing draw from torch's generator
    # float64 throughout, as the golden references: the published forward makes its zero state in the
    # default dtype.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model, _ = peer.build_model(cfg, version)
        model = model.double()
        gen = torch.Generator().manual_seed(1000 + index)
        with torch.no_grad():
            model._proto_w_s.copy_(0.5 + 0.6 * torch.randn(model._proto_w_s.shape, generator=gen))
            model._proto_tau_m.copy_(1.5 * torch.randn(model._proto_tau_m.shape, generator=gen))
            tau = model.tau_s if version == "v1" else model.tau_b
            tau.copy_(torch.empty(tau.shape).uniform_(0.5, 40, generator=gen))
            model.w_y.weight.mul_(3)
            for t in model.state_dict().values():  # float32 values, so that float32 runs hold them exactly
                if t.is_floating_point():
                    t.copy_(t.float().double())
        B, T = 3, int(torch.randint(1, 80, (1,), generator=gen))
        X = torch.zeros(B, T, cfg["num_input"])
        events = torch.rand(X.shape, generator=gen) < 0.2
        if index % 2 == 0:  # spikes in {-1, +1}, as NeuronIO's
            values = (torch.randint(0, 2, X.shape, generator=gen) * 2 - 1).to(X.dtype)
        else:
            values = torch.randn(X.shape, generator=gen).float().double()
        X[events] = values[events]
        R = torch.randn(B, T, cfg["num_output"], generator=gen).float().double()
        y = model(X)
        (y * R).sum().backward()
    finally:
        torch.set_default_dtype(default)
    return cfg, version, model, X, R, y


@pytest.mark.parametrize("index", range(CASES))
def test_matches_the_published_model(index):
    cfg, version, model, X, R, y = published_case(index)
    # every entry, as torch.save would write it (unrouted models: the two empty routing placeholders)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    config = elmneuron.ModelConfig.from_json(json.dumps(cfg), f"case {index}", version)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    label = f"case {index}: {version} {json.dumps(cfg)}"
    for dtype, (output_tol, grad_tol) in TOLERANCE.items():
        ours = elmneuron.Model(config, seed=0, dtype=dtype)
        ours.load_state_dict(state)
        y_ours = ours.forward(X.numpy().astype(dtype))
        err = rel_err(y_ours, y.detach().numpy())
        assert err < output_tol, f"{label} {dtype}"
        if dtype == "float32":  # and about as accurate as the published code run in float32
            with torch.no_grad():
                published_err = rel_err(copy.deepcopy(model).float()(X.float()).numpy(), y.detach().numpy())
            assert err < max(4 * published_err, 1e-6), f"{label}: {err:.2e} vs published {published_err:.2e}"
        grads = ours.backward(R.numpy().astype(dtype))
        assert sorted(grads) == sorted(trainable), label
        for name, p in trainable.items():
            assert rel_err(grads[name], p.grad.numpy()) < grad_tol, f"{label} {dtype}: {name}"
