"""Shared fixtures: golden cases (ELM_GOLDEN_DIR, default <repo>/tests/data/golden), official models
(ELM_MODELS_DIR, default <repo>/models/official) and small helpers."""

import json
import os
import pathlib

import numpy as np
import pytest

import elmneuron

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN_DIR = pathlib.Path(os.environ.get("ELM_GOLDEN_DIR", REPO / "tests" / "data" / "golden"))
MODELS_DIR = pathlib.Path(os.environ.get("ELM_MODELS_DIR", REPO / "models" / "official"))

# golden/README.md: relative error bounds (outputs and traces; gradients and Adam steps).
TOLERANCE = {"float32": (1e-5, 1e-4), "float64": (1e-10, 1e-10)}


def rel_err(ours, ref):
    """||ours - ref|| / ||ref|| in float64 (absolute norm if ref is zero); inf on NaN or shape mismatch."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape or not np.all(np.isfinite(ours)):
        return np.inf
    den = np.linalg.norm(ref)
    num = np.linalg.norm(ours - ref)
    return num / den if den > 0 else num


class GoldenCase:
    """One model case of the golden folder: config, parameters, input and references."""

    def __init__(self, path):
        self.path = path
        self.tensors, self.metadata = elmneuron.read_safetensors(path)
        self.version = self.metadata["model_version"]
        self.config = elmneuron.ModelConfig.from_json(self.metadata["config"], str(path), self.version)
        self.params = {k[len("param."):]: v for k, v in self.tensors.items() if k.startswith("param.")}
        self.trainable = json.loads(self.metadata["trainable"])
        self.adam = json.loads(self.metadata["adam"])

    def model(self, dtype):
        m = elmneuron.Model(self.config, seed=0, dtype=dtype)
        m.load_state_dict(self.params)
        return m


@pytest.fixture(scope="session")
def golden_dir():
    # Missing reference data fails (a skip would report the parity tests green without running them).
    assert GOLDEN_DIR.is_dir(), f"golden folder {GOLDEN_DIR} not present (set ELM_GOLDEN_DIR)"
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def golden(golden_dir):
    """golden('v1_vanilla_small') -> GoldenCase (cached)."""
    cache = {}

    def load(name):
        if name not in cache:
            path = golden_dir / f"{name}.safetensors"
            assert path.exists(), f"golden case {path} not present"
            cache[name] = GoldenCase(path)
        return cache[name]

    return load


@pytest.fixture
def small_config():
    return elmneuron.ModelConfig(num_input=5, num_output=3, num_memory=4, mlp_hidden_size=6)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def sparse_dense_input(rng, shape, density=0.2, dtype=np.float64):
    """A dense array that is mostly zeros, as real spike inputs are."""
    x = rng.standard_normal(shape)
    x[rng.random(shape) > density] = 0.0
    return x.astype(dtype)


def assert_grads_close(a, b):
    """Gradients of the same computation from two backward calls.

    Not compared bitwise: elm::model::backward's result can differ in the last bit with the heap
    addresses of its buffers (vectorised reductions over unaligned buffers), while forward is bitwise
    reproducible. 1e-12 relative to the tensor's largest entry is far below any real difference.
    """
    assert sorted(a) == sorted(b)
    for name in a:
        scale = max(float(np.max(np.abs(a[name]))), 1e-300)
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-12 * scale, err_msg=name)
