"""The speed peer (bench/peer_pytorch.py) and `elmneuron bench --peer`, end to end.

The peer must be the published model (it is checked against the golden files of the published code), and
`bench --peer` must run it on the same shape and report every ratio. Needs Debian's python3-torch
(scripts/install-deps.sh --peer, which the test command installs).
"""
import json
import os
import subprocess
import sys

import pytest
import torch  # noqa: F401  (the peer's dependency: fail here, clearly, if it is missing)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEER = os.path.join(ROOT, "bench", "peer_pytorch.py")
SUMMARIZE = os.path.join(ROOT, "bench", "summarize_runs.py")
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


def run_bench_peer(config, batch, time, input_kind, threads, out, extra=()):
    """A small, fast `elmneuron bench --peer --json out` run of one config; its standard output."""
    r = subprocess.run([CLI, "bench", "--peer", "--peer-python", sys.executable, "--config", json.dumps(config),
                        "--batch", str(batch), "--time", str(time), "--input", input_kind, "--repeats", "1",
                        "--min-time", "0", "--peer-repeats", "1", "--peer-warmup", "1", "--threads", str(threads),
                        "--json", out, *extra],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """One small `elmneuron bench --peer --json` run (its parsed JSON and the file)."""
    config = {"num_input": 30, "num_output": 2, "num_memory": 5, "num_branch": 6, "num_synapse_per_branch": 10,
              "input_to_synapse_routing": "neuronio_routing"}
    out = str(tmp_path_factory.mktemp("bench") / "bench.json")
    assert "inference (peer: no_grad)" in run_bench_peer(config, 2, 30, "neuronio", 1, out)
    return json.load(open(out)), out


def test_bench_peer_prints_every_ratio(bench_json):
    result, _ = bench_json
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


def test_bench_peer_gives_the_peer_the_same_input_rate(tmp_path):
    # Both sides draw their own events (different generators) at the --input-rate given: both counts are
    # binomial around batch·time·channels·rate (6 standard deviations), and both report the rate.
    config = {"num_input": 200, "num_output": 2, "num_memory": 4}
    batch, time, rate = 3, 40, 0.2
    out = str(tmp_path / "bench.json")
    run_bench_peer(config, batch, time, "counts", 1, out, ["--input-rate", str(rate)])
    shape = json.load(open(out))["results"][0]
    pairs = batch * time * config["num_input"]
    for side in (shape, shape["peer"]):
        assert side["input_rate"] == rate
        assert abs(side["input_events"] - pairs * rate) < 6 * (pairs * rate * (1 - rate)) ** 0.5, side


def test_bench_peer_runs_onehot_input_without_a_rate(tmp_path):
    # The long-sequence shape's kind: the peer must get no rate (it rejects one for onehot input).
    out = str(tmp_path / "bench.json")
    run_bench_peer({"num_input": 8, "num_output": 2, "num_memory": 4}, 2, 20, "onehot", 1, out)
    shape = json.load(open(out))["results"][0]
    assert shape["peer"]["input_rate"] is None and shape["peer"]["input_events"] == 2 * 20
    for key in ("inference", "forward_backward", "train_step"):
        assert shape["peer_over_ours"][key] > 0, key


def test_peer_input_rate_is_checked(peer_module):
    x = peer_module.make_input("neuronio", 2, 10, 50, 0, rate=0.0)
    assert x.abs().sum().item() == 0
    assert peer_module.make_input("counts", 2, 10, 50, 0, rate=1.0).ne(0).all()
    for kind, rate in (("onehot", 0.1), ("counts", 1.5), ("neuronio", -0.1)):
        with pytest.raises(ValueError, match="input_rate"):
            peer_module.make_input(kind, 2, 10, 50, 0, rate=rate)


@pytest.fixture(scope="module")
def peer_module():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import peer_pytorch

    return peer_pytorch


def test_peer_thread_counts_are_powers_of_two_below_the_limit_and_the_limit(peer_module):
    assert peer_module.thread_counts(0) == [0]  # torch's default only
    assert peer_module.thread_counts(1) == [1]
    assert peer_module.thread_counts(2) == [1, 2]
    assert peer_module.thread_counts(6) == [1, 2, 4, 6]
    assert peer_module.thread_counts(16) == [1, 2, 4, 8, 16]


def test_bench_peer_with_two_threads_runs_the_peer_at_its_best(tmp_path):
    # The peer is run at its best with at most --threads threads: each of its times is the fastest of its
    # configurations (thread counts 1 and 2; at 2 threads also each other installed OpenBLAS build), and the
    # ratios use that time.
    out = str(tmp_path / "bench.json")
    stdout = run_bench_peer({"num_input": 20, "num_output": 2, "num_memory": 4}, 2, 20, "counts", 2, out)
    assert "peer at its best (the fastest of 1, 2 threads" in stdout
    assert "peer run (threads, BLAS)" in stdout
    result = json.load(open(out))
    shape = result["results"][0]
    peer = shape["peer"]
    assert peer["thread_counts"] == [1, 2]
    configs = peer["configurations"]
    assert {c["threads"] for c in configs} == {1, 2}
    # One configuration per (threads, BLAS build), the other builds only above one thread.
    assert len({(c["threads"], c["blas"]) for c in configs}) == len(configs)
    assert sum(c["threads"] == 1 for c in configs) == 1
    for key, ratio in (("forward_ms", "inference"), ("forward_backward_ms", "forward_backward"),
                       ("train_step_ms", "train_step")):
        assert peer[key] == min(c[key] for c in configs), key
        (best,) = [c for c in configs if (c["threads"], c["blas"]) == (peer["fastest"][key]["threads"],
                                                                      peer["fastest"][key]["blas"])]
        assert best[key] == peer[key], key
        ours = shape["inference_ms" if ratio == "inference" else key]
        assert abs(shape["peer_over_ours"][ratio] - peer[key] / ours) <= 1e-12 * shape["peer_over_ours"][ratio]
    assert result["machine"]["peer"]["thread_counts"] == [1, 2]
    # Each configuration ran with the threads it is labelled with: torch's and the BLAS pool's.
    for c in configs:
        assert c["torch_threads"] == c["threads"], c
        assert c["blas_threads"] == c["threads"], c
    assert "failed_configurations" not in peer


def test_peer_tries_each_installed_openblas_build_above_one_thread(peer_module):
    # Debian installs OpenBLAS as pthreads and OpenMP builds (scripts/install-deps.sh --peer installs both);
    # the one the loader does not pick by default is run in a child process through LD_LIBRARY_PATH.
    installed = sorted(b for b in ("openblas-pthread", "openblas-openmp")
                       if os.path.isfile(f"/usr/lib/{peer_module.multiarch()}/{b}/libblas.so.3"))
    assert len(installed) == 2, f"scripts/install-deps.sh --peer installs both OpenBLAS builds, found {installed}"
    request = {"threads": 2, "repeats": 1, "warmup": 0, "seed": 0,
               "shapes": [{"name": "tiny", "config": {"num_input": 8, "num_output": 1, "num_memory": 2},
                           "batch": 1, "time": 5, "input_kind": "counts"}]}
    r = subprocess.run([sys.executable, PEER], input=json.dumps(request), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    builds = sorted(c["blas"] for c in res["configurations"] if c["threads"] == 2)
    assert builds == installed
    # One thread: only the build the loader picks by default (the BLAS threading does not matter there).
    assert [c["blas"] for c in res["configurations"] if c["threads"] == 1] == [peer_module.blas_build(res["blas"])]
    assert "failed_configurations" not in res


def test_summarize_runs_gives_median_and_range_over_runs(bench_json, tmp_path):
    # Three "runs": the real output and two copies with the ratios and our times scaled, so that the median,
    # minimum and maximum are known by construction.
    result, path = bench_json
    files, scales = [path], (1.0, 3.0, 0.5)
    for i, scale in enumerate(scales[1:]):
        doc = json.loads(json.dumps(result))
        for r in doc["results"]:
            r["inference_ms"] *= scale
            r["peer_over_ours"] = {k: v * scale for k, v in r["peer_over_ours"].items()}
            if i == 0:  # one run of three had the peer's fastest inference from another configuration
                r["peer"]["fastest"]["forward_ms"] = {"threads": 7, "blas": "other-build"}
        f = tmp_path / f"run{i}.json"
        f.write_text(json.dumps(doc))
        files.append(str(f))
    out = tmp_path / "summary.json"
    r = subprocess.run([sys.executable, SUMMARIZE, "--json", str(out)] + files, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    name = result["results"][0]["shape"]
    assert f"| {name} | 1 |" in r.stdout
    (row,) = [x for x in json.loads(out.read_text()) if x["shape"] == name]
    base = result["results"][0]["peer_over_ours"]["inference"]
    ratio = row["ratio_inference"]
    assert ratio["runs"] == 3
    assert abs(ratio["median"] - base) <= 1e-12 * base  # sorted(0.5, 1, 3)[1] = 1
    assert abs(ratio["min"] - 0.5 * base) <= 1e-12 * base and abs(ratio["max"] - 3 * base) <= 1e-12 * base
    loaded = result["results"][0]["peer"]["fastest"]["forward_ms"]
    assert loaded["threads"] == 1
    assert row["peer_run_as_inference"] == f"1 {loaded['blas']} (2 of 3)"
    assert row["peer_run_as_train_step"] == f"1 {result['results'][0]['peer']['fastest']['train_step_ms']['blas']}"
    assert f"| 1 {loaded['blas']} (2 of 3) / 1 " in r.stdout
    ours = row["ours_inference_ms"]
    assert abs(ours["median"] - result["results"][0]["inference_ms"]) <= 1e-12 * ours["median"]


def test_summarize_runs_keeps_runs_against_different_peers_apart(bench_json, tmp_path):
    # The same run once as if its peer had been the published code (bench --published-code) with doubled
    # ratios: two rows, each over its own run, labelled; runs from before peer_code count as the
    # re-implementation.
    result, path = bench_json
    assert result["machine"]["peer"]["peer_code"]["kind"] == "re-implementation"
    doc = json.loads(json.dumps(result))
    doc["machine"]["peer"]["peer_code"] = {"kind": "published", "folder": "/src/elmneuron", "git_commit": "a" * 40}
    for r in doc["results"]:
        r["peer_over_ours"] = {k: 2 * v for k, v in r["peer_over_ours"].items()}
    published = tmp_path / "published.json"
    published.write_text(json.dumps(doc))
    old = json.loads(json.dumps(result))
    del old["machine"]["peer"]["peer_code"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(old))
    out = tmp_path / "summary.json"
    r = subprocess.run([sys.executable, SUMMARIZE, "--json", str(out), path, str(published), str(older)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    name = result["results"][0]["shape"]
    label = "published code (/src/elmneuron @ aaaaaaaaaaaa)"
    assert f"| {name} [peer: {label}] | 1 |" in r.stdout
    assert f"| {name} [peer: re-implementation] | 1 |" in r.stdout
    rows = {row["peer"]: row for row in json.loads(out.read_text()) if row["shape"] == name}
    assert set(rows) == {label, "re-implementation"}
    base = result["results"][0]["peer_over_ours"]["inference"]
    assert rows[label]["ratio_inference"]["runs"] == 1
    assert abs(rows[label]["ratio_inference"]["median"] - 2 * base) <= 1e-12 * base
    assert rows["re-implementation"]["ratio_inference"]["runs"] == 2
    assert abs(rows["re-implementation"]["ratio_inference"]["max"] - base) <= 1e-12 * base


def test_summarize_runs_names_a_file_that_is_not_bench_output(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text(json.dumps({"hello": 1}))
    r = subprocess.run([sys.executable, SUMMARIZE, str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "notes.json" in r.stderr and "results" in r.stderr
    # An output that cannot be written is refused before any work.
    r = subprocess.run([sys.executable, SUMMARIZE, "--json", str(tmp_path / "missing" / "s.json"), str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "s.json" in r.stderr and "writable folder" in r.stderr and "results" not in r.stderr


# ---- --published-code: the published code itself as the peer ---------------------------------------------
# A checkout of github.com/AaronSpieler/elmneuron is not part of this repository (nor downloaded in tests), so
# these tests build a folder with its layout (src/expressive_leaky_memory_neuron.py and _v2.py, class ELM with
# the published constructor signatures: v1 without mlp_activation) whose classes record how they were
# constructed and then run this repository's re-implementation. They check the plumbing: that the peer imports
# and times the checkout's classes, with the published keyword arguments, and says so; and the errors.

PUBLISHED_V1 = '''
import json
import sys
from typing import Optional

sys.path.insert(0, {bench!r})
import peer_pytorch


class ELM(peer_pytorch.ELMv1):
    def __init__(self, num_input: int, num_output: int, num_memory: int = 100, lambda_value: float = 5.0,
                 mlp_num_layers: int = 1, mlp_hidden_size: Optional[int] = None, tau_s_value: float = 5.0,
                 memory_tau_min: float = 1.0, memory_tau_max: float = 1000.0, learn_memory_tau: bool = False,
                 w_s_value: float = 0.5, num_branch: Optional[int] = None, num_synapse_per_branch: int = 1,
                 input_to_synapse_routing: Optional[str] = None, delta_t: float = 1.0):
        kwargs = dict(num_memory=num_memory, lambda_value=lambda_value, mlp_num_layers=mlp_num_layers,
                      mlp_hidden_size=mlp_hidden_size, memory_tau_min=memory_tau_min,
                      memory_tau_max=memory_tau_max, learn_memory_tau=learn_memory_tau, w_s_value=w_s_value,
                      num_branch=num_branch, num_synapse_per_branch=num_synapse_per_branch,
                      input_to_synapse_routing=input_to_synapse_routing, delta_t=delta_t)
        with open({log!r}, "a") as f:
            f.write(json.dumps({{"class": "v1", "num_input": num_input, "tau_s_value": tau_s_value,
                                 "types": {{k: type(v).__name__ for k, v in kwargs.items()}}, **kwargs}}) + "\\n")
        super().__init__(num_input, num_output, tau_s_value=tau_s_value, **kwargs)
'''

PUBLISHED_V2 = '''
import json
import sys

sys.path.insert(0, {bench!r})
import peer_pytorch


class ELM(peer_pytorch.ELMv2):
    def __init__(self, num_input: int, num_output: int, mlp_activation: str = "relu", tau_b_value: float = 5.0,
                 **kwargs):
        with open({log!r}, "a") as f:
            f.write(json.dumps({{"class": "v2", "mlp_activation": mlp_activation, "tau_b_value": tau_b_value,
                                 **kwargs}}) + "\\n")
        super().__init__(num_input, num_output, mlp_activation=mlp_activation, tau_b_value=tau_b_value,
                         **kwargs)
'''


@pytest.fixture
def published_checkout(tmp_path):
    """A folder with the published code's layout (see above) and the log its classes write."""
    checkout, log = tmp_path / "elmneuron-published", tmp_path / "constructed.jsonl"
    (checkout / "src").mkdir(parents=True)
    bench = os.path.join(ROOT, "bench")
    (checkout / "src" / "expressive_leaky_memory_neuron.py").write_text(PUBLISHED_V1.format(bench=bench, log=str(log)))
    (checkout / "src" / "expressive_leaky_memory_neuron_v2.py").write_text(
        PUBLISHED_V2.format(bench=bench, log=str(log)))
    return checkout, log


def constructed(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run_peer(*args, stdin=None):
    r = subprocess.run([sys.executable, PEER, *args], input=stdin, capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return r, lines


ROUTED = {"num_input": 30, "num_output": 2, "num_memory": 5, "num_branch": 6, "num_synapse_per_branch": 10,
          "input_to_synapse_routing": "neuronio_routing", "memory_tau_max": 150, "delta_t": 1}


def test_peer_times_the_published_classes_of_a_checkout(published_checkout):
    checkout, log = published_checkout
    r, lines = run_peer("--published-code", str(checkout), "--config", json.dumps(ROUTED), "--batch", "2",
                        "--time", "10", "--input", "neuronio", "--threads", "1", "--repeats", "1", "--warmup", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    res = lines[-1]
    assert res["peer_code"] == {"kind": "published", "folder": str(checkout), "git_commit": None}
    assert res["peer"] == f"pytorch (the published code itself, from {checkout})"
    assert res["forward_ms"] > 0 and res["train_step_ms"] > 0
    calls = constructed(log)
    assert calls and all(c["class"] == "v1" for c in calls)
    # The published keywords, TorchScript's float constants as floats (the config gave 150 and 1), and no
    # mlp_activation, which the published v1 class does not take.
    c = calls[-1]
    assert c["num_input"] == 30 and c["num_memory"] == 5 and c["num_branch"] == 6
    assert c["input_to_synapse_routing"] == "neuronio_routing"
    assert c["memory_tau_max"] == 150.0 and c["types"]["memory_tau_max"] == "float"
    assert c["types"]["delta_t"] == "float"
    assert "mlp_activation" not in c


def test_peer_without_published_code_says_it_runs_its_re_implementation(published_checkout):
    checkout, log = published_checkout
    r, lines = run_peer("--config", json.dumps(ROUTED), "--batch", "1", "--time", "5", "--input", "neuronio",
                        "--threads", "1", "--repeats", "1", "--warmup", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines[-1]["peer_code"] == {"kind": "re-implementation", "file": PEER}
    assert constructed(log) == []


def test_peer_names_the_checkout_commit_only_for_its_own_repository(published_checkout, peer_module):
    checkout, _ = published_checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(checkout.parent)], check=True)
    # Inside another repository, but not a checkout itself: no commit (it would be the other one's).
    assert peer_module.peer_code(str(checkout))["git_commit"] is None
    subprocess.run([*git, "init", "-q", str(checkout)], check=True)
    subprocess.run([*git, "-C", str(checkout), "add", "."], check=True)
    subprocess.run([*git, "-C", str(checkout), "commit", "-q", "-m", "published"], check=True)
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert peer_module.peer_code(str(checkout)) == {"kind": "published", "folder": str(checkout),
                                                    "git_commit": head}


def test_peer_passes_the_v2_class_its_activation(published_checkout):
    checkout, log = published_checkout
    config = {**ROUTED, "model_version": "v2", "mlp_activation": "silu", "tau_b_value": 7}
    request = {"threads": 1, "repeats": 1, "warmup": 0, "published_code": str(checkout),
               "shapes": [{"name": "v2", "config": config, "batch": 1, "time": 5, "input_kind": "neuronio"}]}
    r, lines = run_peer(stdin=json.dumps(request))
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines[-1]["model_version"] == "v2" and lines[-1]["peer_code"]["kind"] == "published"
    c = constructed(log)[-1]
    assert c["class"] == "v2" and c["mlp_activation"] == "silu" and c["tau_b_value"] == 7.0


def test_peer_refuses_an_activation_the_published_v1_class_lacks(published_checkout):
    checkout, log = published_checkout
    r, lines = run_peer("--published-code", str(checkout), "--config", json.dumps({**ROUTED, "mlp_activation": "silu"}),
                        "--batch", "1", "--time", "5", "--input", "neuronio", "--threads", "1", "--repeats", "1")
    assert r.returncode == 1
    assert "mlp_activation 'silu'" in lines[-1]["error"] and "takes no mlp_activation" in lines[-1]["error"]
    assert constructed(log) == []


def test_peer_published_code_errors_name_the_folder_and_what_is_missing(published_checkout, tmp_path):
    checkout, _ = published_checkout
    empty = tmp_path / "empty"
    empty.mkdir()
    r, lines = run_peer("--published-code", str(empty), "--config", json.dumps(ROUTED))
    assert r.returncode == 2
    assert str(empty / "src" / "expressive_leaky_memory_neuron.py") in lines[-1]["error"]
    assert "AaronSpieler/elmneuron" in lines[-1]["error"]
    # A checkout whose import fails (the published package imports seaborn for its plots): the reason and
    # what to install.
    (checkout / "src" / "expressive_leaky_memory_neuron.py").write_text("import seaborn_not_installed_here\n")
    r, lines = run_peer("--published-code", str(checkout), "--config", json.dumps(ROUTED))
    assert r.returncode == 2
    error = lines[-1]["error"]
    assert "importing src/expressive_leaky_memory_neuron.py failed" in error
    assert "seaborn_not_installed_here" in error and "install-deps.sh --peer" in error
    # A module without the class.
    (checkout / "src" / "expressive_leaky_memory_neuron.py").write_text("X = 1\n")
    r, lines = run_peer("--published-code", str(checkout), "--config", json.dumps(ROUTED))
    assert r.returncode == 2 and "has no class ELM" in lines[-1]["error"]


def test_peer_verifies_a_checkout_against_the_golden_files(published_checkout):
    # --verify builds each golden case through the checkout's classes (here: the re-implementation behind the
    # published signatures, so every case must pass and each must have been built by the checkout).
    checkout, log = published_checkout
    r, lines = run_peer("--verify", os.path.join(ROOT, "tests", "data", "golden"), "--published-code", str(checkout))
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(lines) >= 6 and all(res["ok"] for res in lines), lines
    versions = sorted(c["class"] for c in constructed(log))
    assert versions == sorted(res["file"][:2] for res in lines)


def test_bench_peer_times_the_published_code_when_given(published_checkout, tmp_path):
    checkout, log = published_checkout
    out = str(tmp_path / "bench.json")
    stdout = run_bench_peer(ROUTED, 2, 20, "neuronio", 1, out, ["--published-code", str(checkout)])
    assert f"peer: pytorch (the published code itself, from {checkout})" in stdout
    result = json.load(open(out))
    assert result["machine"]["peer"]["peer_code"]["kind"] == "published"
    assert result["machine"]["peer"]["peer_code"]["folder"] == str(checkout)
    shape = result["results"][0]
    assert shape["peer_over_ours"]["train_step"] > 0
    assert constructed(log), "bench --peer --published-code did not construct the checkout's class"


def test_bench_published_code_is_checked_before_measuring(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([CLI, "bench", "--peer", "--peer-python", sys.executable, "--published-code", str(empty),
                        "--config", json.dumps(ROUTED), "--batch", "1", "--time", "5", "--threads", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "--published-code" in r.stderr and "expressive_leaky_memory_neuron.py" in r.stderr
    assert "custom" not in r.stdout  # no shape was measured
    for args in (["--published-code", str(empty)], ["--peer", "--published-code", str(tmp_path / "missing")]):
        r = subprocess.run([CLI, "bench", *args, "--config", json.dumps(ROUTED)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0 and "--published-code" in r.stderr, r.stderr


def test_bench_peer_times_the_published_code_in_every_configuration(published_checkout, tmp_path):
    # At two threads the peer also runs in a child process with the other OpenBLAS build: that one must time
    # the checkout's class too (one construction per configuration timed).
    checkout, log = published_checkout
    out = str(tmp_path / "bench.json")
    run_bench_peer(ROUTED, 2, 20, "neuronio", 2, out, ["--published-code", str(checkout)])
    peer = json.load(open(out))["results"][0]["peer"]
    assert "failed_configurations" not in peer
    assert len(peer["configurations"]) >= 2
    assert len(constructed(log)) == len(peer["configurations"])


# The performance issue's table: every reference shape with both sides, as a fresh clone's user runs it (one
# timed call each, so it takes about a minute; the numbers are not checked, only that every ratio is there).
REFERENCE = {  # shape: (batch, time, target train step, target inference), as the issue gives them
    "neuronio_branch_elm_dm15": (32, 500, 50, 100),
    "neuronio_branch_elm_dm100": (32, 500, 30, 50),
    "shd_vanilla_elm_dm100": (32, 250, 10, 10),
    "long_sequence_onehot_dm100": (16, 4096, 10, 10),
}


def test_bench_peer_prints_every_ratio_of_the_reference_shapes(tmp_path):
    out = str(tmp_path / "bench.json")
    r = subprocess.run([CLI, "bench", "--peer", "--peer-python", sys.executable, "--threads", "1", "--repeats", "1",
                        "--min-time", "0", "--peer-repeats", "1", "--peer-warmup", "0", "--stream-steps", "2000",
                        "--json", out], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.load(open(out))
    shapes = {s["shape"]: s for s in result["results"]}
    assert set(shapes) == set(REFERENCE) | {"streaming_single_sample_dm15"}
    table = r.stdout[r.stdout.index("ours vs the published PyTorch code"):]
    for name, (batch, time, train_target, inference_target) in REFERENCE.items():
        s = shapes[name]
        assert (s["peer"]["batch"], s["peer"]["time"]) == (batch, time), name
        assert s["target"] == {"train_step": train_target, "inference": inference_target}, name
        for key in ("inference", "forward_backward", "train_step"):
            assert s["peer_over_ours"][key] > 0, (name, key)
        for key in ("inference", "train_step"):
            assert s["best_possible_ratio_at_fma_peak"][key] > 0, (name, key)
        assert 0 < s["fraction_of_limit_inference"] and 0 < s["fraction_of_limit_train"], name
        # Its row in the comparison: three ratios, two of them against the targets.
        (row,) = [line for line in table.splitlines() if line.startswith(name)]
        assert row.count("x") >= 3 and row.count(" ok") + row.count(" LOW") == 2, row
    assert shapes["streaming_single_sample_dm15"]["steps_per_s"] > 0
