"""`elmneuron bench --peer` with a scripted peer of known answers (no torch needed).

The peer protocol (bench/peer_pytorch.py's docstring) asks of a peer only its three times per shape; all else
it answers describes the run. Checked here: ratios are the scripted times over ours, a shape whose answer is
bad (an error, a missing time) is reported in its row while the others go on, and a peer that times no shape
at all fails the command after our results are written.
"""
import json
import os
import subprocess
import sys

import pytest

CLI = os.environ["ELM_CLI"]

# Times only, none of the real peer's torch, BLAS and thread fields (the BLAS summary of its sgemm peak not
# even text), with per-shape faults from the environment.
SCRIPTED_PEER = r'''
import json, os, sys
if "--sgemm-peak" in sys.argv:
    print(json.dumps({"sgemm_gflops": 12.5, "blas": {"summary": 5}}))
    sys.exit(0)
name = json.load(sys.stdin)["shapes"][0]["name"]
answer = {"shape": name, "forward_ms": 1000.0, "forward_backward_ms": 3000.0, "train_step_ms": 3500.0}
if name in os.environ.get("SCRIPTED_PEER_WITHOUT_TRAIN_STEP", "").split(","):
    del answer["train_step_ms"]
if name == os.environ.get("SCRIPTED_PEER_FAILS_ON"):
    answer = {"shape": name, "error": {"code": 7}}
print(json.dumps(answer))
'''


def run_scripted_peer(tmp_path, env, *flags):
    script = tmp_path / "scripted_peer.py"
    script.write_text(SCRIPTED_PEER)
    return subprocess.run([CLI, "bench", "--peer", "--peer-python", sys.executable, "--peer-script", str(script),
                           "--repeats", "1", "--min-time", "0", "--threads", "1", *flags],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, **env))


def test_bench_peer_reports_each_shape_the_peer_fails_on_and_goes_on(tmp_path):
    out = tmp_path / "bench.json"
    # The first shape's answer is an error (not even text), a later one lacks a time.
    r = run_scripted_peer(tmp_path, {"SCRIPTED_PEER_FAILS_ON": "neuronio_branch_elm_dm15",
                                     "SCRIPTED_PEER_WITHOUT_TRAIN_STEP": "shd_vanilla_elm_dm100"},
                          "--stream-steps", "2000", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    results = {x["shape"]: x for x in json.load(open(out))["results"]}
    for name in ("neuronio_branch_elm_dm100", "long_sequence_onehot_dm100"):  # answered in full
        ours, ratio = results[name], results[name]["peer_over_ours"]
        assert ratio["inference"] == pytest.approx(1000.0 / ours["inference_ms"], rel=1e-9)
        assert ratio["forward_backward"] == pytest.approx(3000.0 / ours["forward_backward_ms"], rel=1e-9)
        assert ratio["train_step"] == pytest.approx(3500.0 / ours["train_step_ms"], rel=1e-9)
    dm15, shd = results["neuronio_branch_elm_dm15"], results["shd_vanilla_elm_dm100"]
    assert dm15["peer"]["error"] == '{"code":7}'  # the peer's own error, as text
    assert "no train_step_ms in its answer for shape shd_vanilla_elm_dm100" in shd["peer"]["error"]
    assert "peer_over_ours" not in dm15 and "peer_over_ours" not in shd
    assert 'neuronio_branch_elm_dm15     | peer failed: {"code":7}' in r.stdout, r.stdout
    assert "shd_vanilla_elm_dm100        | peer failed: bench: field '--peer'" in r.stdout, r.stdout
    assert "BLAS ?" in r.stdout and "torch ?" in r.stdout
    assert "internal error" not in r.stdout + r.stderr


def test_bench_peer_fails_when_the_peer_times_no_shape_but_writes_ours(tmp_path):
    out = tmp_path / "bench.json"
    r = run_scripted_peer(tmp_path, {"SCRIPTED_PEER_WITHOUT_TRAIN_STEP": "neuronio_branch_elm_dm15"},
                          "--shape", "neuronio_branch_elm_dm15", "--json", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--peer" in r.stderr and "failed on every shape" in r.stderr
    assert "no train_step_ms in its answer for shape neuronio_branch_elm_dm15" in r.stdout
    assert "internal error" not in r.stderr
    (shape,) = json.load(open(out))["results"]  # our measurement is kept
    assert shape["shape"] == "neuronio_branch_elm_dm15" and shape["train_step_ms"] > 0
    assert "error" in shape["peer"]
