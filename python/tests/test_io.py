"""File bindings: safetensors round trips over every dtype, zero-copy reads, .npy, PyTorch state dicts."""

import numpy as np
import pytest

import elmneuron
from conftest import MODELS_DIR


def all_dtypes(rng):
    return {
        "f16": rng.standard_normal((3, 2)).astype(np.float16),
        "f32": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "f64": rng.standard_normal(5),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "i16": np.array([[-3, 4]], dtype=np.int16),
        "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "i64": np.array([2**40, -1], dtype=np.int64),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def test_safetensors_round_trip(tmp_path, rng):
    tensors = all_dtypes(rng)
    metadata = {"config": '{"num_input": 2}', "note": "ünïcode"}
    path = tmp_path / "t.safetensors"
    elmneuron.write_safetensors(path, tensors, metadata)
    read, meta = elmneuron.read_safetensors(path)
    assert meta == metadata
    assert set(read) == set(tensors)
    for name, value in tensors.items():
        assert read[name].dtype == value.dtype, name
        assert read[name].shape == value.shape, name
        np.testing.assert_array_equal(read[name], value)
    # In-memory forms agree with the file.
    data = path.read_bytes()
    assert elmneuron.serialize_safetensors(tensors, metadata) == data
    parsed, meta2 = elmneuron.parse_safetensors(data)
    assert meta2 == metadata and set(parsed) == set(tensors)


def test_read_returns_views_of_the_reader_buffer(tmp_path):
    path = tmp_path / "v.safetensors"
    elmneuron.write_safetensors(path, {"a": np.arange(6.0), "b": np.ones(2, dtype=np.float32)})
    read, _ = elmneuron.read_safetensors(path)
    a = read["a"]
    assert a.base is not None and not a.flags.owndata  # no copy into a numpy-owned buffer
    assert a.flags.writeable and a.flags.c_contiguous
    del read
    np.testing.assert_array_equal(a, np.arange(6.0))  # the capsule keeps the buffer alive


def test_writer_copies_non_contiguous_and_byte_swapped(tmp_path):
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    tensors = {"t": base.T, "big": base.astype(">f4"), "strided": base[:, ::2]}
    path = tmp_path / "c.safetensors"
    elmneuron.write_safetensors(path, tensors)
    read, _ = elmneuron.read_safetensors(path)
    np.testing.assert_array_equal(read["t"], base.T)
    assert read["big"].dtype == np.float32
    np.testing.assert_array_equal(read["big"], base)
    np.testing.assert_array_equal(read["strided"], base[:, ::2])


def test_unsupported_dtype_is_an_error(tmp_path):
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.write_safetensors(tmp_path / "x.safetensors", {"z": np.zeros(2, dtype=np.complex64)})
    assert info.value.field == "z"
    with pytest.raises(elmneuron.Error) as info:
        elmneuron.write_safetensors(tmp_path / "x.safetensors", {"u": np.zeros(2, dtype=np.uint32)})
    assert info.value.field == "u"
    with pytest.raises(elmneuron.Error):
        elmneuron.write_safetensors(tmp_path / "x.safetensors", {"a": np.zeros(2)}, {"k": 1})  # str values only
    assert not (tmp_path / "x.safetensors").exists()


def test_npy_round_trip(tmp_path, rng):
    for value in [rng.standard_normal((2, 3)).astype(np.float32), np.arange(5, dtype=np.int64),
                  np.array([True, False])]:
        path = tmp_path / "a.npy"
        elmneuron.write_npy(path, value)
        back = elmneuron.read_npy(path)
        assert back.dtype == value.dtype
        np.testing.assert_array_equal(back, value)
        np.testing.assert_array_equal(np.load(path), value)  # numpy reads what we write
    np.save(tmp_path / "np.npy", np.arange(6, dtype=np.float64).reshape(2, 3))
    np.testing.assert_array_equal(elmneuron.read_npy(tmp_path / "np.npy"), np.arange(6.0).reshape(2, 3))


def test_torch_state_dict_matches_loaded_model():
    folder = MODELS_DIR / "num_memory_1"
    pt = folder / "neuronio_best_model_state.pt"
    assert pt.exists(), f"{pt} not present (set ELM_MODELS_DIR)"
    sd = elmneuron.read_torch_state_dict(pt)
    m = elmneuron.load_model(folder)
    model_sd = m.state_dict()
    assert set(sd) == set(model_sd)
    for name, value in sd.items():
        np.testing.assert_array_equal(model_sd[name], value.astype(model_sd[name].dtype), err_msg=name)
    # The same model, built from the config and the state dict by hand.
    with open(folder / "model_config.json") as f:
        cfg = elmneuron.ModelConfig.from_json(f.read())
    by_hand = elmneuron.Model(cfg)
    by_hand.load_state_dict(sd)
    np.testing.assert_array_equal(by_hand.parameters(), m.parameters())
