"""tests/parity/parity_main.cpp (elm_parity) on cases derived from the repo's golden files: a case checks what
it holds (golden/README.md describes whole cases; a further case may come without Adam steps or traces), a
wrong reference still fails, and without --models the pretrained cases find the official models.

Needs numpy only; ELM_PARITY (the runner) and ELM_GOLDEN_DIR are set by ctest."""
import importlib.util
import json
import os
import shutil
import struct
import subprocess

import numpy as np

PARITY = os.environ["ELM_PARITY"]
GOLDEN = os.environ["ELM_GOLDEN_DIR"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("elm_plots", os.path.join(ROOT, "tools", "plots", "elm_plots.py"))
elm_plots = importlib.util.module_from_spec(_spec)  # its numpy safetensors reader
_spec.loader.exec_module(elm_plots)
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "BOOL": np.bool_}


def read(path):
    tensors, meta = elm_plots.read_safetensors(path)
    return meta, tensors


def write(path, meta, tensors):
    header, blobs, at = {"__metadata__": meta}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a).tobytes()
        dtype = {v: k for k, v in DTYPES.items()}[a.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def run(folder, *extra):
    # Without the ELM_*_DIR variables, which override the runner's flags (ctest's way to point it elsewhere).
    env = {k: v for k, v in os.environ.items() if k not in ("ELM_GOLDEN_DIR", "ELM_MODELS_DIR")}
    return subprocess.run([PARITY, "--golden", str(folder), *extra], capture_output=True, text=True, env=env)


def derived(tmp_path, name, change):
    meta, tensors = read(os.path.join(GOLDEN, "v1_vanilla_small.safetensors"))
    change(meta, tensors)
    folder = tmp_path / name
    folder.mkdir()
    write(folder / f"{name}.safetensors", meta, tensors)
    return folder


def dropping(*prefixes):
    """A change that leaves out the tensors with these prefixes (and with adam3.* the Adam settings)."""
    def change(meta, tensors):
        if "adam3." in prefixes:
            del meta["adam"]
        for k in [k for k in tensors if k.startswith(prefixes)]:
            del tensors[k]
    return change


def test_a_case_without_adam_steps_checks_the_rest(tmp_path):
    r = run(derived(tmp_path, "no_adam", dropping("adam3.")))
    assert r.returncode == 0, r.stdout
    assert "parity: 2 passed" in r.stdout and "adam3    -    " in r.stdout and "grad    -" not in r.stdout, r.stdout


def test_a_case_without_traces_checks_the_rest(tmp_path):
    r = run(derived(tmp_path, "no_traces", dropping("trace.")))
    assert r.returncode == 0, r.stdout
    assert "trace    -    " in r.stdout and "adam3    -" not in r.stdout, r.stdout


def test_a_wrong_reference_still_fails(tmp_path):
    def wrong(meta, tensors):
        dropping("adam3.", "trace.")(meta, tensors)
        tensors["grad.w_y.bias"] = tensors["grad.w_y.bias"] * 1.01
    r = run(derived(tmp_path, "wrong", wrong))
    assert r.returncode == 1 and "grad.w_y.bias" in r.stdout, r.stdout


def test_pretrained_cases_find_the_official_models_without_models_flag(tmp_path):
    folder = tmp_path / "pretrained"
    folder.mkdir()
    shutil.copy(os.path.join(GOLDEN, "pretrained_num_memory_15.safetensors"), folder)
    r = run(folder)
    assert r.returncode == 0 and "parity: 2 passed, 0 failed" in r.stdout, r.stdout + r.stderr
