"""Error translation: elm::error -> elmneuron.Error (a ValueError with file/field/expected/got/hint),
elm::file_not_found_error -> FileNotFoundError; messages name the offending field."""

import numpy as np
import pytest

import elmneuron


def raises_field(field, func, *args, **kwargs):
    with pytest.raises(elmneuron.Error) as info:
        func(*args, **kwargs)
    err = info.value
    assert err.field == field, (err.field, str(err))
    assert f"field '{field}'" in str(err)
    return err


def test_error_is_a_value_error_with_fields():
    assert issubclass(elmneuron.Error, ValueError)
    err = raises_field("num_input", elmneuron.ModelConfig, num_input=0, num_output=1)
    assert err.file == "ModelConfig" and err.expected == ">= 1" and err.got == "0"
    assert isinstance(err.hint, str)
    with pytest.raises(ValueError):  # catchable as a plain ValueError
        elmneuron.ModelConfig(num_input=0, num_output=1)


@pytest.mark.parametrize("reader", [elmneuron.load_model, elmneuron.read_safetensors,
                                    elmneuron.read_torch_state_dict, elmneuron.read_npy])
def test_missing_file_is_file_not_found(tmp_path, reader):
    path = tmp_path / "does_not_exist.safetensors"
    if reader is elmneuron.read_torch_state_dict:
        path = path.with_suffix(".pt")
    elif reader is elmneuron.read_npy:
        path = path.with_suffix(".npy")
    with pytest.raises(FileNotFoundError) as info:
        reader(path)
    assert info.value.filename == str(path)
    assert info.value.errno == 2


def test_wrong_input_shape_names_the_field(small_config):
    m = elmneuron.Model(small_config)
    err = raises_field("num_input", m.forward, np.zeros((2, 4, 4), dtype=np.float32))  # model has 5 inputs
    assert "num_input" in str(err) and err.got == "4"
    raises_field("x", m.forward, np.zeros((4, 5), dtype=np.float32))  # not [B, T, n]
    raises_field("x", m.forward, np.zeros((0, 4, 5), dtype=np.float32))
    raises_field("x", m.forward, np.array([["a"]]))  # not numeric


def test_non_finite_input(small_config):
    m = elmneuron.Model(small_config)
    x = np.zeros((1, 3, 5))
    x[0, 2, 1] = np.nan
    with pytest.raises(elmneuron.Error) as info:
        m.forward(x)
    assert "NaN" in str(info.value) or "finite" in str(info.value)


def test_backward_errors(small_config):
    m = elmneuron.Model(small_config)
    raises_field("forward", m.backward, np.zeros((1, 3, 3), dtype=np.float32))
    m.forward(np.zeros((1, 3, 5), dtype=np.float32))
    err = raises_field("dy", m.backward, np.zeros((1, 3, 2), dtype=np.float32))
    assert "[1, 3, 3]" in err.expected


def test_config_errors():
    raises_field("mlp_activation", elmneuron.ModelConfig, num_input=2, num_output=1, mlp_activation="tanh")
    raises_field("model_version", elmneuron.ModelConfig, num_input=2, num_output=1, model_version="v3")
    raises_field("input_to_synapse_routing", elmneuron.ModelConfig, num_input=2, num_output=1,
                 input_to_synapse_routing="everywhere")
    raises_field("tau_b_value", elmneuron.ModelConfig, num_input=2, num_output=1, tau_s_value=1.0, tau_b_value=2.0)
    # Without routing, the synapse count must equal num_input.
    raises_field("input_to_synapse_routing", elmneuron.ModelConfig, num_input=4, num_output=1, num_branch=3)
    raises_field("memory_tau_max", elmneuron.ModelConfig, num_input=2, num_output=1, memory_tau_max=0.5)
    raises_field("num_memry", elmneuron.ModelConfig.from_json, '{"num_input": 2, "num_output": 1, "num_memry": 3}')
    raises_field("num_output", elmneuron.ModelConfig.from_dict, {"num_input": 2})
    with pytest.raises(TypeError):  # unknown keyword
        elmneuron.ModelConfig(num_input=2, num_output=1, num_memry=3)
    raises_field("dtype", elmneuron.Model, elmneuron.ModelConfig(num_input=2, num_output=1), dtype="int32")


def test_state_dict_errors(small_config):
    m = elmneuron.Model(small_config)
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    before = m.parameters().copy()

    missing = dict(sd)
    del missing["w_y.bias"]
    assert raises_field("w_y.bias", m.load_state_dict, missing).got == "missing"

    bad_shape = dict(sd)
    bad_shape["w_y.weight"] = sd["w_y.weight"].T.copy()
    raises_field("w_y.weight", m.load_state_dict, bad_shape)

    unknown = dict(sd)
    unknown["extra"] = np.zeros(3, dtype=np.float32)
    raises_field("extra", m.load_state_dict, unknown)

    nan = dict(sd)
    nan["w_y.bias"] = np.full_like(sd["w_y.bias"], np.nan)
    with pytest.raises(elmneuron.Error):
        m.load_state_dict(nan)

    np.testing.assert_array_equal(m.parameters(), before)  # failed loads change nothing
    with pytest.raises(elmneuron.Error) as info:
        m.parameter("no_such_parameter")
    assert "w_y.weight" in info.value.expected  # lists the known names


def test_sparse_input_errors():
    ok = dict(offsets=[0, 1, 1], channels=[0], values=[1.0], shape=(1, 2, 3))
    elmneuron.SparseInput(**ok)
    raises_field("offsets", elmneuron.SparseInput, **{**ok, "offsets": [0, 1]})
    raises_field("offsets[2]", elmneuron.SparseInput, **{**ok, "offsets": [0, 2, 1]})  # decreasing
    raises_field("channels[0]", elmneuron.SparseInput, **{**ok, "channels": [3]})
    raises_field("channels[0]", elmneuron.SparseInput, **{**ok, "channels": [2**32 + 1]})  # no silent wrap
    raises_field("channels", elmneuron.SparseInput, **{**ok, "channels": [0.5]})
    raises_field("values[0]", elmneuron.SparseInput, **{**ok, "values": [np.inf]})
    raises_field("shape", elmneuron.SparseInput, **{**ok, "shape": (1, 2)})
    m = elmneuron.Model(elmneuron.ModelConfig(num_input=4, num_output=1))
    raises_field("num_input", m.forward, elmneuron.SparseInput(**ok))


def test_malformed_safetensors_names_the_problem():
    with pytest.raises(elmneuron.Error):
        elmneuron.parse_safetensors(b"\x00")
    good = elmneuron.serialize_safetensors({"a": np.arange(4, dtype=np.float32)})
    truncated = good[:-3]
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.parse_safetensors(truncated, "truncated.safetensors")
    assert info.value.file == "truncated.safetensors"


def test_python_errors_keep_their_types(small_config):
    m = elmneuron.Model(small_config)
    with pytest.raises(TypeError):
        m.forward()
    with pytest.raises(elmneuron.Error):
        m.load_state_dict([1, 2, 3])
