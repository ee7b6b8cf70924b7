"""bench/bench_model (Google Benchmark) with the PyTorch peer side by side (--peer).

Each benchmark of a reference shape reports the peer's time per call (peer_ms) and the ratio peer_over_ours,
which must be the peer's time over our real time per call. Checked with the real peer (Debian's
python3-torch) and with a scripted peer whose answers are known, which also records what it was asked.
"""
import json
import os
import subprocess
import sys

import pytest

BENCH = os.environ["ELM_BENCH_MODEL"]
DM15 = "neuronio_branch_elm_dm15"
KEYS = {"bm_inference": "forward_ms", "bm_forward_backward": "forward_backward_ms",
        "bm_train_step": "train_step_ms"}


def run_bench(tmp_path, *flags, env=None):
    out = tmp_path / "gb.json"
    r = subprocess.run([BENCH, "--threads=1", "--benchmark_min_time=0.05", f"--benchmark_out={out}",
                        "--benchmark_out_format=json", *flags], capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, **(env or {})))
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(out.read_text()), r


def by_measurement(result):
    """{measurement: benchmark} of the run (names are bm_<measurement>/<shape>/real_time)."""
    return {b["name"].split("/")[0]: b for b in result["benchmarks"]}


def seconds_per_call(b):
    return b["real_time"] * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9}[b["time_unit"]]


def check_rate(b, batch, time):
    assert b["sample_steps/s"] == pytest.approx(batch * time / seconds_per_call(b), rel=1e-9), b["name"]


def check_counters(b, batch, time):
    check_rate(b, batch, time)
    assert b["peer_over_ours"] == pytest.approx(b["peer_ms"] * 1e-3 / seconds_per_call(b), rel=1e-9), b["name"]


def test_real_peer_gives_every_measurement_its_ratio(tmp_path):
    import torch  # noqa: F401  (the real peer's dependency: fail here, clearly, if it is missing)
    result, r = run_bench(tmp_path, "--peer", f"--peer_python={sys.executable}", "--peer_repeats=1",
                          "--peer_warmup=0", f"--benchmark_filter={DM15}")
    got = by_measurement(result)
    assert set(got) == set(KEYS)
    for b in got.values():
        assert b["peer_ms"] > 0 and b["peer_over_ours"] > 0, b
        check_counters(b, 32, 500)
    assert result["context"]["peer_blas"] not in ("", "?")  # the BLAS the peer's torch runs on
    assert result["context"]["elmneuron_threads"] == "1"
    assert r.stderr.count(f"peer: {DM15}") == 1  # asked once per shape, not per measurement or repeat


FAKE = r'''
import json, sys
log = sys.argv[0] + ".log"
if "--sgemm-peak" in sys.argv:
    open(log, "a").write(json.dumps({"argv": sys.argv[1:]}) + "\n")
    print(json.dumps({"sgemm_gflops": 12.5, "blas": {"summary": "fake blas"}}))
    sys.exit(0)
request = json.load(sys.stdin)
open(log, "a").write(json.dumps(request) + "\n")
shape = request["shapes"][0]
answer = {"shape": shape["name"], "forward_ms": 1000.0, "forward_backward_ms": 3000.0, "train_step_ms": 3500.0}
if shape["name"] == __import__("os").environ.get("FAKE_PEER_FAILS_ON"):
    answer = {"shape": shape["name"], "error": "out of memory (fake)"}
if shape["name"] == __import__("os").environ.get("FAKE_PEER_WITHOUT_TRAIN_STEP"):
    del answer["train_step_ms"]
if shape["name"] == __import__("os").environ.get("FAKE_PEER_BAD_BACKWARD"):
    answer["forward_backward_ms"] = "slow"
if shape["name"] == __import__("os").environ.get("FAKE_PEER_NEGATIVE_FORWARD"):
    answer["forward_ms"] = -1.0
print(json.dumps(answer))
'''


def test_peer_answers_go_to_their_measurements_and_the_peer_gets_the_shape(tmp_path):
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE)
    result, _ = run_bench(tmp_path, "--peer", f"--peer_python={sys.executable}", f"--peer_script={script}",
                          "--peer_repeats=2", "--peer_warmup=1",
                          "--benchmark_filter=(shd_vanilla_elm_dm100|long_sequence_onehot_dm100)")
    names = {b["name"] for b in result["benchmarks"]}
    assert len(names) == 6, names
    for b in result["benchmarks"]:
        measurement, shape = b["name"].split("/")[:2]
        expected_ms = {"forward_ms": 1000.0, "forward_backward_ms": 3000.0, "train_step_ms": 3500.0}
        assert b["peer_ms"] == expected_ms[KEYS[measurement]], b["name"]
        batch, time = (32, 250) if shape.startswith("shd") else (16, 4096)
        check_counters(b, batch, time)
    assert result["context"]["peer_blas"] == "fake blas"
    calls = [json.loads(line) for line in open(str(script) + ".log")]
    assert calls[0] == {"argv": ["--sgemm-peak", "--threads", "1"]}  # first, before any measurement
    requests = calls[1:]
    assert [q["shapes"][0]["name"] for q in requests] == ["shd_vanilla_elm_dm100", "long_sequence_onehot_dm100"]
    shd, long = (q["shapes"][0] for q in requests)
    assert (shd["batch"], shd["time"], shd["input_kind"]) == (32, 250, "counts")
    assert (shd["config"]["num_input"], shd["config"]["num_memory"], shd["config"]["delta_t"]) == (700, 100, 4)
    assert (long["batch"], long["time"], long["input_kind"]) == (16, 4096, "onehot")
    assert all((q["threads"], q["repeats"], q["warmup"]) == (1, 2, 1) for q in requests)


def test_published_code_reaches_the_peer(tmp_path):
    script, checkout = tmp_path / "fake_peer.py", tmp_path / "elmneuron-checkout"
    script.write_text(FAKE)
    checkout.mkdir()
    result, _ = run_bench(tmp_path, "--peer", f"--peer_python={sys.executable}", f"--peer_script={script}",
                          f"--published_code={checkout}", "--benchmark_filter=bm_inference/shd_vanilla_elm_dm100")
    assert by_measurement(result)["bm_inference"]["peer_ms"] == 1000.0
    assert str(checkout) in result["context"]["peer"] and "published code itself" in result["context"]["peer"]
    calls = [json.loads(line) for line in open(str(script) + ".log")]
    # The script checks the checkout first (bench/peer_pytorch.py --sgemm-peak --published-code), then times it.
    assert calls[0] == {"argv": ["--sgemm-peak", "--threads", "1", "--published-code", str(checkout)]}
    assert [q["published_code"] for q in calls[1:]] == [str(checkout)]


def test_a_shape_the_peer_fails_on_is_skipped_with_its_error_and_the_others_run(tmp_path):
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE)
    result, _ = run_bench(tmp_path, "--peer", f"--peer_python={sys.executable}", f"--peer_script={script}",
                          "--benchmark_filter=bm_inference/(shd_vanilla_elm_dm100|long_sequence_onehot_dm100"
                          "|neuronio_branch_elm_dm100)|bm_train_step/neuronio_branch_elm_dm15",
                          env={"FAKE_PEER_FAILS_ON": "shd_vanilla_elm_dm100",
                               "FAKE_PEER_WITHOUT_TRAIN_STEP": "neuronio_branch_elm_dm15",
                               "FAKE_PEER_BAD_BACKWARD": "neuronio_branch_elm_dm100"})
    got = {b["name"].split("/")[1]: b for b in result["benchmarks"]}
    assert set(got) == {"shd_vanilla_elm_dm100", "long_sequence_onehot_dm100", "neuronio_branch_elm_dm15",
                        "neuronio_branch_elm_dm100"}
    shd, dm15, dm100 = got["shd_vanilla_elm_dm100"], got["neuronio_branch_elm_dm15"], got["neuronio_branch_elm_dm100"]
    assert shd.get("error_occurred") and "out of memory (fake)" in shd["error_message"]
    assert dm15.get("error_occurred") and "no train_step_ms" in dm15["error_message"]
    # An answer with a time that is not a number: skipped too, although its own measurement (inference) has one.
    assert dm100.get("error_occurred") and 'a bad forward_backward_ms' in dm100["error_message"]
    assert '"slow"' in dm100["error_message"]
    assert not got["long_sequence_onehot_dm100"].get("error_occurred")
    assert got["long_sequence_onehot_dm100"]["peer_ms"] == 1000.0


def test_a_negative_peer_time_is_refused(tmp_path):
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE)
    result, _ = run_bench(tmp_path, "--peer", f"--peer_python={sys.executable}", f"--peer_script={script}",
                          "--benchmark_filter=bm_train_step/shd_vanilla_elm_dm100",
                          env={"FAKE_PEER_NEGATIVE_FORWARD": "shd_vanilla_elm_dm100"})
    b = by_measurement(result)["bm_train_step"]
    assert b.get("error_occurred") and "a bad forward_ms in its answer for shape shd_vanilla_elm_dm100: -1" in \
        b["error_message"]


def test_listing_the_benchmarks_does_not_run_the_peer(tmp_path):
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE)
    # The flag, with a value Google Benchmark reads as true, or its environment variable.
    for listing, env in ((["--benchmark_list_tests"], {}), (["--benchmark_list_tests=yes"], {}),
                         ([], {"BENCHMARK_LIST_TESTS": "1"})):
        r = subprocess.run([BENCH, "--peer", f"--peer_python={sys.executable}", f"--peer_script={script}",
                            *listing], capture_output=True, text=True, timeout=120, env=dict(os.environ, **env))
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"bm_train_step/{DM15}" in r.stdout and "bm_stream_step" in r.stdout, (listing, env)
        assert not os.path.exists(str(script) + ".log"), f"the peer ran although nothing was measured: {listing}"
    # Listing switched off: the peer is asked (its sgemm peak first) before measuring.
    run_bench(tmp_path, "--peer", f"--peer_python={sys.executable}", f"--peer_script={script}",
              "--benchmark_list_tests=0", "--benchmark_filter=bm_inference/shd_vanilla_elm_dm100")
    calls = [json.loads(line) for line in open(str(script) + ".log")]
    assert calls[0] == {"argv": ["--sgemm-peak", "--threads", "1"]} and len(calls) == 2


def test_without_peer_there_are_no_peer_counters(tmp_path):
    result, _ = run_bench(tmp_path, "--benchmark_filter=bm_inference/neuronio_branch_elm_dm15|bm_stream_step")
    got = by_measurement(result)
    assert set(got) == {"bm_inference", "bm_stream_step"}
    assert "peer_ms" not in got["bm_inference"] and "peer" not in result["context"]
    check_rate(got["bm_inference"], 32, 500)


@pytest.mark.parametrize("flags, field", [
    (["--peer_repeats=two"], "--peer_repeats"),
    (["--bogus"], "--bogus"),
    (["--peer", "--peer_python=/nonexistent/python3"], "--peer_python /usr/bin/python3"),  # the hint
    (["--peer_repeats=3"], "--peer_repeats"),  # a peer setting without --peer
    (["--peer", "--peer_python="], "--peer_python="),
    (["--peer", "--peer_script=/nonexistent/peer.py"], "/nonexistent/peer.py"),
    (["--peer", "--published_code=/nonexistent/checkout"], "--published_code"),
    (["--published_code=/tmp"], "--published_code"),
])
def test_bad_flags_and_a_peer_that_cannot_run_are_clear_errors_before_measuring(tmp_path, flags, field):
    r = subprocess.run([BENCH, *flags, "--benchmark_filter=bm_inference/neuronio_branch_elm_dm15"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert field in r.stderr, r.stderr
    assert "bm_inference" not in r.stdout  # nothing was measured


def test_help_lists_our_flags_after_google_benchmarks():
    r = subprocess.run([BENCH, "--help"], capture_output=True, text=True, timeout=60)
    assert "--benchmark_filter" in r.stdout
    ours = r.stdout[r.stdout.index("elmneuron flags:"):]
    for flag in ("--threads", "--peer]", "--peer_python", "--peer_script", "--published_code", "--peer_repeats",
                 "--peer_warmup"):
        assert flag in ours, flag
