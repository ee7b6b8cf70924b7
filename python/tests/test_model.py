"""Model bindings: golden parity (outputs, traces, gradients, Adam steps), zero-copy parameters,
sparse vs dense input, input gradients, precision, save/load, config."""

import gc
import json
import pickle

import numpy as np
import pytest

import elmneuron
from conftest import MODELS_DIR, TOLERANCE, assert_grads_close, rel_err, sparse_dense_input

MODEL_CASES = ["v2_vanilla_one_memory", "v1_vanilla_small", "v1_two_layer_mlp_learn_tau",
               "v2_random_routing_silu_learn_tau"]
DTYPES = ["float32", "float64"]


def trace_tolerance(ref, tol):
    # References stored as F32 carry float32 rounding: compare them at 1e-6 at best (as the C++ parity test).
    return max(tol, 1e-6) if ref.dtype == np.float32 else tol


# ---- golden parity


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MODEL_CASES)
def test_golden_forward_and_traces(golden, case, dtype):
    g = golden(case)
    tol, _ = TOLERANCE[dtype]
    m = g.model(dtype)
    assert m.dtype == np.dtype(dtype)
    y, traces = m.forward(g.tensors["input"], traces=True)
    assert y.dtype == np.dtype(dtype) and y.shape == g.tensors["output"].shape
    assert rel_err(y, g.tensors["output"]) < tol
    ref = g.tensors["trace.memory"]
    assert rel_err(traces["memory"], ref) < trace_tolerance(ref, tol)
    if g.version == "v2":
        ref = g.tensors["trace.branch"]
        assert rel_err(traces["branch"], ref) < trace_tolerance(ref, tol)
    else:
        ref = g.tensors["trace.synapse"]
        assert rel_err(m.synapse_trace(g.tensors["input"]), ref) < trace_tolerance(ref, tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MODEL_CASES)
def test_golden_gradients(golden, case, dtype):
    """Gradient of loss = sum(output * grad_output) against the published model's autograd."""
    g = golden(case)
    _, tol = TOLERANCE[dtype]
    m = g.model(dtype)
    assert sorted(m.trainable_names) == sorted(g.trainable)
    m.forward(g.tensors["input"])
    grads = m.backward(g.tensors["grad_output"])
    assert sorted(grads) == sorted(g.trainable)
    for name in g.trainable:
        assert grads[name].dtype == np.dtype(dtype)
        assert rel_err(grads[name], g.tensors["grad." + name]) < tol, name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["v2_vanilla_one_memory", "v1_vanilla_small"])
def test_golden_adam_steps(golden, case, dtype):
    g = golden(case)
    _, tol = TOLERANCE[dtype]
    m = g.model(dtype)
    a = g.adam
    opt = elmneuron.Optimizer(m, "adam", lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"],
                              weight_decay=a["weight_decay"])
    for _ in range(a["steps"]):
        m.forward(g.tensors["input"])
        opt.step(m, m.backward(g.tensors["grad_output"]))
    assert opt.steps == a["steps"]
    sd = m.state_dict()
    for name in g.trainable:
        assert rel_err(sd[name], g.tensors["adam3." + name]) < tol, name


def test_pretrained_official_model(golden_dir):
    """An official zoo folder (.pt state dict + model_config.json) reproduces the published output."""
    folder = MODELS_DIR / "num_memory_15"
    ref_path = golden_dir / "pretrained_num_memory_15.safetensors"
    assert folder.is_dir() and ref_path.exists(), f"{folder} or {ref_path} not present"
    tensors, metadata = elmneuron.read_safetensors(ref_path)
    m = elmneuron.load_model(folder, dtype="float64")
    assert m.config == elmneuron.ModelConfig.from_json(metadata["config"])
    y = m.forward(tensors["input"])
    assert rel_err(y, tensors["output"]) < TOLERANCE["float64"][0]


# ---- zero-copy parameters


def test_state_dict_views_change_the_model(small_config, rng):
    m = elmneuron.Model(small_config, seed=3, dtype="float64")
    x = sparse_dense_input(rng, (2, 6, 5))
    y0 = m.forward(x)
    sd = m.state_dict()
    assert sd["w_y.bias"].base is m  # a view whose base keeps the model alive
    assert np.shares_memory(sd["w_y.bias"], m.parameters())
    sd["w_y.bias"] += 1.0  # the readout bias adds to every output
    y1 = m.forward(x)
    np.testing.assert_allclose(y1 - y0, 1.0, rtol=0, atol=1e-12)
    # The same through parameter(name) and the flat block.
    m.parameter("w_y.weight")[...] = 0.0
    np.testing.assert_array_equal(m.forward(x), np.broadcast_to(sd["w_y.bias"], y0.shape))
    info = {p["name"]: p for p in m.layout()}["w_y.bias"]
    m.parameters()[info["offset"]:info["offset"] + info["size"]] = 0.0
    np.testing.assert_array_equal(m.forward(x), 0.0)


def test_view_keeps_model_alive(small_config):
    m = elmneuron.Model(small_config, seed=5)
    view = m.parameter("mlp.network.0.weight")
    expected = view.copy()
    del m
    gc.collect()
    np.testing.assert_array_equal(view, expected)
    view *= 2.0  # still the model's memory, still writable


def test_load_state_dict_updates_existing_views(small_config):
    a = elmneuron.Model(small_config, seed=1)
    b = elmneuron.Model(small_config, seed=2)
    view = a.parameter("w_y.weight")
    assert not np.array_equal(view, b.parameter("w_y.weight"))
    a.load_state_dict(b.state_dict())
    np.testing.assert_array_equal(view, b.parameter("w_y.weight"))
    for name, value in b.state_dict().items():
        np.testing.assert_array_equal(a.state_dict()[name], value)


def test_trainable_mask_is_read_only(small_config):
    m = elmneuron.Model(small_config)
    mask = m.trainable_mask
    assert mask.dtype == np.bool_ and mask.size == m.num_parameters
    assert int(mask.sum()) == m.num_trainable == small_config.num_trainable
    with pytest.raises(ValueError):
        mask[0] = False


# ---- input forms


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_equals_dense(small_config, rng, dtype):
    m = elmneuron.Model(small_config, seed=7, dtype=dtype)
    x = sparse_dense_input(rng, (3, 9, 5), dtype=dtype)
    y_dense = m.forward(x)
    grads_dense, dx_dense = m.backward(np.ones_like(y_dense), input_grad=True)

    s = elmneuron.SparseInput.from_dense(x)
    assert s.shape == x.shape and s.num_events == np.count_nonzero(x) and s.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(s.to_dense(), x)
    y_sparse = m.forward(s)
    np.testing.assert_array_equal(y_sparse, y_dense)
    grads_sparse, dx_sparse = m.backward(np.ones_like(y_dense), input_grad=True)
    assert_grads_close(grads_sparse, grads_dense)
    assert_grads_close({"x": dx_sparse}, {"x": dx_dense})

    # The same events given explicitly as (offsets, channels, values, shape).
    flat = x.reshape(-1, x.shape[2])
    counts = np.count_nonzero(flat, axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rows, channels = np.nonzero(flat)
    explicit = elmneuron.SparseInput(offsets, channels, flat[rows, channels], x.shape)
    np.testing.assert_array_equal(explicit.offsets, offsets)
    np.testing.assert_array_equal(m.forward(explicit), y_dense)


def test_sparse_repeated_channel_adds(small_config):
    m = elmneuron.Model(small_config, seed=2, dtype="float64")
    # Sample 0, step 1: channel 2 twice (0.25 + 0.5); every other step empty.
    offsets = np.zeros(1 * 4 + 1, dtype=np.int64)
    offsets[2:] = 2
    s = elmneuron.SparseInput(offsets, [2, 2], [0.25, 0.5], (1, 4, 5))
    dense = np.zeros((1, 4, 5))
    dense[0, 1, 2] = 0.75
    np.testing.assert_array_equal(s.to_dense(), dense)
    np.testing.assert_allclose(m.forward(s), m.forward(dense), rtol=1e-13, atol=1e-13)


def test_input_gradient_matches_finite_differences(rng):
    cfg = elmneuron.ModelConfig(num_input=3, num_output=2, num_memory=3, mlp_hidden_size=5, model_version="v2")
    m = elmneuron.Model(cfg, seed=11, dtype="float64")
    x = rng.standard_normal((2, 5, 3))
    dy = rng.standard_normal((2, 5, 2))
    m.forward(x)
    _, dx = m.backward(dy, input_grad=True)
    h = 1e-6
    for index in [(0, 0, 0), (0, 4, 2), (1, 2, 1), (1, 0, 2)]:
        xp, xm = x.copy(), x.copy()
        xp[index] += h
        xm[index] -= h
        fd = (np.sum(m.forward(xp) * dy) - np.sum(m.forward(xm) * dy)) / (2 * h)
        assert abs(fd - dx[index]) <= 1e-6 * max(1.0, abs(fd)), index


def test_dtype_conversion_and_astype(small_config, rng):
    m32 = elmneuron.Model(small_config, seed=9, dtype=np.float32)
    m64 = m32.astype("float64")
    assert m64.dtype == np.float64 and m32.dtype == np.float32
    for name, value in m32.state_dict().items():
        np.testing.assert_array_equal(m64.state_dict()[name], value.astype(np.float64))
    x = sparse_dense_input(rng, (2, 7, 5))  # float64 input into a float32 model: converted
    y32 = m32.forward(x)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, m64.forward(x), rtol=1e-4, atol=1e-5)
    # Integer input is accepted (spike counts).
    assert m64.forward(np.ones((1, 3, 5), dtype=np.int32)).shape == (1, 3, 3)


def test_thread_count_does_not_change_results(small_config, rng):
    m = elmneuron.Model(small_config, seed=4)
    x = sparse_dense_input(rng, (40, 6, 5), dtype=np.float32)
    before = elmneuron.num_threads()
    try:
        elmneuron.set_num_threads(1)
        y1 = m.forward(x)
        g1 = m.backward(np.ones_like(y1))
        elmneuron.set_num_threads(max(2, before))
        y2 = m.forward(x)
        g2 = m.backward(np.ones_like(y2))
    finally:
        elmneuron.set_num_threads(before)
    np.testing.assert_array_equal(y1, y2)
    assert_grads_close(g1, g2)


def test_config_from_dict_takes_numpy_scalars_and_names_non_finite_values():
    c = elmneuron.ModelConfig.from_dict({"num_input": np.int64(3), "num_output": 2, "lambda_value": np.float32(2.5)})
    assert (c.num_input, c.lambda_value) == (3, 2.5)
    with pytest.raises(elmneuron.Error, match="'lambda_value': expected a finite number, got nan"):
        elmneuron.ModelConfig.from_dict({"num_input": 3, "num_output": 2, "lambda_value": float("nan")})
    with pytest.raises(elmneuron.Error, match="not JSON serializable$"):
        elmneuron.ModelConfig.from_dict({"num_input": 3, "num_output": 2, "x": object()})


def test_an_input_whose_conversion_cannot_fit_in_memory_is_a_clear_error():
    """A float64 view of 10^9 steps needs a 5 TB float32 copy: an elmneuron.Error naming the input and its
    shape (pybind11 clears numpy's MemoryError, which surfaced as 'error_already_set ... not set')."""
    m = elmneuron.load_model(MODELS_DIR / "num_memory_1")
    huge = np.broadcast_to(np.float64(0), (1, 10**9, 1278))
    with pytest.raises(elmneuron.Error, match=r"1000000000, 1278.*out of memory"):
        m.forward(huge)


def test_backward_needs_a_new_forward(small_config, rng):
    """backward consumes the activations (torch without retain_graph); gradients never accumulate."""
    m = elmneuron.Model(small_config, seed=6)
    x = sparse_dense_input(rng, (2, 5, 5), dtype=np.float32)
    dy = np.ones((2, 5, 3), dtype=np.float32)
    m.forward(x)
    first = m.backward(dy)
    with pytest.raises(elmneuron.Error) as info:
        m.backward(dy)
    assert info.value.field == "forward"
    m.forward(x)
    assert_grads_close(first, m.backward(dy))


# ---- files and configs


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_and_load_round_trip(tmp_path, rng, dtype):
    cfg = elmneuron.ModelConfig(num_input=6, num_output=2, num_memory=3, num_branch=3, num_synapse_per_branch=4,
                                input_to_synapse_routing="random_routing", model_version="v2")
    m = elmneuron.Model(cfg, seed=21, dtype=dtype)
    path = tmp_path / "model.safetensors"
    m.save(path)
    loaded = elmneuron.load_model(path, dtype=dtype)
    assert loaded.config == m.config
    for name, value in m.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
    x = sparse_dense_input(rng, (2, 5, 6))
    np.testing.assert_array_equal(loaded.forward(x), m.forward(x))
    tensors, metadata = elmneuron.read_safetensors(str(path))
    assert metadata["format"] == "elmneuron" and metadata["model_version"] == "v2"
    assert json.loads(metadata["config"]) == cfg.to_dict()
    assert tensors["valid_indices_mask"].dtype == np.bool_
    elmneuron.save_model(tmp_path / "again.safetensors", loaded)
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_model_config_keywords_and_round_trips():
    c = elmneuron.ModelConfig(num_input=8, num_output=2, num_memory=10, tau_b_value=7.0, model_version="v2",
                              mlp_activation="silu", delta_t=2.0)
    assert c.model_version == "v2" and c.tau_b_value == 7.0 and c.tau_s_value == 7.0
    assert c.mlp_hidden_size == 20 and c.num_branch == 8 and c.num_synapse == 8
    d = c.to_dict()
    assert d["tau_b_value"] == 7.0 and d["mlp_activation"] == "silu" and d["input_to_synapse_routing"] is None
    assert elmneuron.ModelConfig(**d) == c
    assert elmneuron.ModelConfig.from_dict(d) == c
    assert elmneuron.ModelConfig.from_json(c.to_json()) == c
    assert pickle.loads(pickle.dumps(c)) == c
    assert c != elmneuron.ModelConfig(num_input=8, num_output=2)
    assert "num_memory=10" in repr(c)
    m = elmneuron.Model(c)
    assert m.config == c and m.model_version == "v2"
    assert json.loads(m.config_json()) == d
    info = m.info()
    assert info["trainable_parameters"] == c.num_trainable == m.num_trainable
    assert [p["name"] for p in info["parameters"]] == m.parameter_names


def test_published_parameter_count(golden):
    g = golden("v1_vanilla_small")
    m = g.model("float32")
    expected = sum(g.params[name].size for name in g.trainable)
    assert m.num_trainable == expected == g.config.num_trainable


def test_concurrent_calls_from_python_threads(small_config, rng):
    """forward/backward release the GIL; calls on one model are serialised, so results stay exact."""
    import threading

    m = elmneuron.Model(small_config, seed=12, dtype="float64")
    inputs = [sparse_dense_input(rng, (4, 8, 5)) for _ in range(6)]
    expected = [m.forward(x) for x in inputs]
    results = [None] * len(inputs)
    errors = []

    def run(i):
        try:
            for _ in range(20):
                results[i] = m.forward(inputs[i])
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


# ---- inference and streaming


@pytest.mark.parametrize("dtype", DTYPES)
def test_infer_and_stream_equal_forward(golden, dtype):
    g = golden("v2_random_routing_silu_learn_tau")
    m = g.model(dtype)
    x = g.tensors["input"]
    y = m.forward(x)
    assert np.array_equal(m.infer(x), y)
    s = m.stream(batch=x.shape[0])
    assert s.batch == x.shape[0]
    steps = np.stack([s.step(x[:, t]) for t in range(x.shape[1])], axis=1)
    assert np.array_equal(steps, y)
    _, traces = m.forward(x, traces=True)
    assert np.array_equal(s.memory, traces["memory"][:, -1])
    s.reset()
    assert np.array_equal(s.step(x[:, 0]), y[:, 0])
    # infer leaves the activations of forward in place: backward still works.
    m.forward(x)
    m.infer(x)
    grads = m.backward(g.tensors["grad_output"].astype(dtype))
    assert grads


def test_stream_of_one_sample_takes_a_vector_and_rejects_bad_shapes(small_config, rng):
    m = elmneuron.Model(small_config, seed=1)
    s = m.stream()
    x = rng.normal(size=(5, small_config.num_input)).astype(np.float32)
    y = np.stack([s.step(x[t]) for t in range(5)])
    assert np.array_equal(y, m.forward(x[None])[0])
    with pytest.raises(elmneuron.Error, match="shape"):
        s.step(np.zeros(small_config.num_input + 1, dtype=np.float32))
    with pytest.raises(elmneuron.Error):
        s.step(np.full(small_config.num_input, np.nan, dtype=np.float32))
