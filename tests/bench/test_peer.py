"""The speed peer (bench/peer_pytorch.py) and `elmneuron bench --peer`, end to end.

The peer must be the published model (it is checked against the golden files of the published code), and
`bench --peer` must run it on the same shape and report every ratio. Needs Debian's python3-torch
(scripts/install-deps.sh --peer, which the test command installs).
"""
import json
import os
import subprocess
import sys
import tempfile

import torch  # noqa: F401  (the peer's dependency: fail here, clearly, if it is missing)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEER = os.path.join(ROOT, "bench", "peer_pytorch.py")
CLI = os.environ["ELM_CLI"]


def test_peer_reproduces_the_published_golden_cases():
    r = subprocess.run([sys.executable, PEER, "--verify", os.path.join(ROOT, "tests", "data", "golden")],
                       capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(lines) >= 6
    for res in lines:
        assert res["ok"], res
        assert res["output_rel_err"] < 1e-9 and res["grad_rel_err"] < 1e-8, res


def test_peer_reports_its_blas_and_sgemm_peak():
    r = subprocess.run([sys.executable, PEER, "--sgemm-peak", "--threads", "1"], capture_output=True, text=True,
                       timeout=300, check=True)
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["sgemm_gflops"] > 0.1
    assert info["torch_num_threads"] == 1
    assert info["blas"]["summary"]


def test_bench_peer_prints_every_ratio():
    config = {"num_input": 30, "num_output": 2, "num_memory": 5, "num_branch": 6, "num_synapse_per_branch": 10,
              "input_to_synapse_routing": "neuronio_routing"}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        r = subprocess.run([CLI, "bench", "--peer", "--peer-python", sys.executable, "--config", json.dumps(config),
                            "--batch", "2", "--time", "30", "--input", "neuronio", "--repeats", "1", "--min-time", "0",
                            "--peer-repeats", "1", "--peer-warmup", "1", "--threads", "1", "--json", out],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "inference (peer: no_grad)" in r.stdout
        result = json.load(open(out))
        shape = result["results"][0]
        for key in ("inference", "forward_backward", "train_step"):
            assert shape["peer_over_ours"][key] > 0, key
        # No implementation doing our arithmetic beats the bound at the FMA peak.
        for key in ("inference", "train_step"):
            assert shape["best_possible_ratio_at_fma_peak"][key] >= shape["peer_over_ours"][key], key
        peer = shape["peer"]
        assert peer["batch"] == 2 and peer["time"] == 30 and peer["input_kind"] == "neuronio"
        assert peer["num_trainable"] == shape["num_trainable"]
        machine = result["machine"]
        assert machine["peer"]["torch_num_threads"] == 1
        assert machine["peak_gflops_one_thread"]["peer_sgemm"] > 0
