"""tools/neuron: mechanisms build, input generator, NEURON runs, NeuronIO pickle layout.

Run: /usr/bin/python3 -m pytest tests/neuron -q   (needs Debian packages neuron, neuron-dev,
python3-neuron, python3-scipy, build-essential; mpirun optional). About a minute on 2 cores.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools", "neuron")
sys.path.insert(0, TOOLS)

# What the generator needs is installed by scripts/install-deps.sh --neuron; missing, these tests fail (a
# skip would report the generator green without running it).
import neuron  # noqa: E402,F401  python3-neuron
import scipy  # noqa: E402,F401
assert shutil.which("nocmodl") and shutil.which("cc"), "nocmodl / cc not installed (neuron-dev, build-essential)"

import inputs  # noqa: E402

PARAMS_KEYS = {
    "randomSeed": int, "numSimulations": int, "totalSimDurationInSec": int,
    "collectAndSaveDVTs": bool, "numSamplesPerMS_HighRes": int, "excitatorySynapseType": str,
    "inhibitorySynapseType": str, "useActiveDendrites": bool, "Ih_vshift": int,
    "inst_rate_sampling_time_interval_options_ms": list, "num_bas_ex_spikes_per_100ms_range": list,
    "num_bas_ex_inh_spike_diff_per_100ms_range": list, "num_apic_ex_spikes_per_100ms_range": list,
    "num_apic_ex_inh_spike_diff_per_100ms_range": list, "allSectionsType": list,
    "allSections_DistFromSoma": list, "allSectionsLength": list, "allSegmentsType": list,
    "allSegmentsLength": list, "allSegments_DistFromSoma": list,
    "allSegments_SectionDistFromSoma": list, "allSegments_SectionInd": list,
    "ISICV": np.floating, "listOfISIs": list, "numOutputSpikesPerSim": list,
    "totalNumOutputSpikes": int, "totalNumSimulationSeconds": int,
    "averageOutputFrequency": float, "entireExperimentDurationInMinutes": float,
}
SIM_DTYPES = {
    "recordingTimeHighRes": np.float32, "somaVoltageHighRes": np.float16,
    "nexusVoltageHighRes": np.float16, "recordingTimeLowRes": np.float32,
    "somaVoltageLowRes": np.float16, "nexusVoltageLowRes": np.float16,
    "outputSpikeTimes": np.float16,
}
N_SEG = 639


# --- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mech(tmp_path_factory):
    build = tmp_path_factory.mktemp("mech")
    script = os.path.join(TOOLS, "build_mechanisms.sh")
    subprocess.run(["bash", script, str(build)], check=True, capture_output=True)
    lib = build / "libelmmech.so"
    assert lib.is_file()
    mtime = lib.stat().st_mtime_ns
    again = subprocess.run(["bash", script, str(build)], check=True, capture_output=True, text=True)
    assert "up to date" in again.stdout
    assert lib.stat().st_mtime_ns == mtime
    return str(lib)


def simulate(cfg: dict, out, tmp_path, *extra, mpi: int = 0):
    cfg_path = tmp_path / f"cfg_{abs(hash(json.dumps(cfg, sort_keys=True)))}.json"
    cfg_path.write_text(json.dumps(cfg))
    cmd = [sys.executable, os.path.join(TOOLS, "simulate.py"), "--config", str(cfg_path),
           "--out", str(out), *extra]
    if mpi:
        cmd = ["mpirun", "--oversubscribe", "-np", str(mpi)] + \
              (["--allow-run-as-root"] if os.geteuid() == 0 else []) + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def pickles(out):
    """Pickle names sorted by their seed."""
    names = [p for p in os.listdir(out) if p.endswith(".p")]
    return sorted(names, key=lambda p: int(p[:-2].rsplit("_", 1)[1]))


def load(path):
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        return head, pickle.load(f, encoding="latin1")


def base_cfg(mech, **kw):
    cfg = {"num_files": 2, "simulations_per_file": 2, "duration_ms": 1000, "seed": 4242,
           "mechanisms": mech}
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def run1(mech, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run1")
    out = tmp / "out"
    r = simulate(base_cfg(mech), out, tmp, "--workers", "1")
    assert r.returncode == 0, r.stderr
    return out, r


# --- input generator (no NEURON) -------------------------------------------------------------

def test_generator_statistics():
    p = inputs.GeneratorParams()
    bas = np.full(262, 20.0)
    apic = np.full(377, 20.0)
    ex_counts, inh_counts = [], []
    for seed in range(4):
        ex, inh, info = inputs.generate_inputs(np.random.RandomState(seed), 3000, bas, apic, p)
        assert ex.shape == inh.shape == (N_SEG, 3000) and ex.dtype == bool
        assert 5 <= info["inst_rate_sampling_time_interval_ms"] <= 470
        assert 5 <= info["temporal_inst_rate_smoothing_sigma_ms"] <= 620
        for rows in (slice(0, 262), slice(262, N_SEG)):  # per tree, spikes per 100 ms
            e = ex[rows].sum() / 30.0
            i = inh[rows].sum() / 30.0
            assert 0 < e < 800 and 0 <= i < 1000
            assert -600 - 50 < i - e < 200 + 50
        ex_counts.append(ex.mean() * 1000)
        inh_counts.append(inh.mean() * 1000)
    # published protocol: about 12 Hz excitatory and 9 Hz inhibitory per segment
    assert 6 < np.mean(ex_counts) < 18
    assert 4 < np.mean(inh_counts) < 15
    assert np.mean(inh_counts) < np.mean(ex_counts)


def test_generator_is_seeded_and_ordered():
    p = inputs.GeneratorParams()
    bas, apic = np.full(5, 30.0), np.full(7, 12.0)
    a = inputs.generate_inputs(np.random.RandomState(3), 500, bas, apic, p)
    b = inputs.generate_inputs(np.random.RandomState(3), 500, bas, apic, p)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all() and a[2] == b[2]
    d = inputs.spikes_to_dict(a[0])
    seg, t = np.nonzero(a[0])
    naive = {}
    for s, tt in zip(seg, t):
        naive.setdefault(s, []).append(tt)
    assert list(d) == list(naive) and d == naive
    assert pickle.dumps(d, protocol=2) == pickle.dumps(naive, protocol=2)
    k = next(iter(d))
    assert type(k) is np.int64 and type(d[k][0]) is np.int64


def test_generator_rejects_bad_ranges():
    with pytest.raises(ValueError, match="num_bas_ex_spikes_per_100ms_range"):
        inputs.GeneratorParams.from_dict({"num_bas_ex_spikes_per_100ms_range": [10, 0]})
    with pytest.raises(ValueError, match="unknown"):
        inputs.GeneratorParams.from_dict({"bogus": 1})


def test_spike_detection_rule():
    import nrn_run
    t = np.arange(0, 10, 0.125)
    v = np.full_like(t, -70.0)
    v[20:23] = [-30.0, 10.0, -20.0]   # peak above -25 -> spike at t[21]
    v[40:43] = [-40.0, -30.0, -45.0]  # peak below -25 -> none
    v[60:64] = [0.0, 5.0, 5.0, 0.0]   # flat top is not a strict local maximum (published rule)
    assert nrn_run.detect_spikes(t, v).tolist() == [t[21]]


# --- NEURON runs ------------------------------------------------------------------------------

def test_pickle_layout(run1):
    out, r = run1
    files = pickles(out)
    assert len(files) == 2
    assert "sim 2/2" in r.stderr  # per-simulation progress on stderr
    for name, seed in zip(files, (4242, 4243)):
        assert name.startswith("sim__saved_InputSpikes___")
        assert name.endswith(f"_outSpikes__2_simulationRuns__1_secDuration__randomSeed_{seed}.p")
        head, d = load(out / name)
        assert head == b"\x80\x02"  # protocol 2
        assert list(d) == ["Params", "Results"]
        params = d["Params"]
        assert set(params) == set(PARAMS_KEYS)
        for k, typ in PARAMS_KEYS.items():
            assert isinstance(params[k], typ), (k, type(params[k]))
        assert params["randomSeed"] == seed and params["numSimulations"] == 2
        assert params["totalSimDurationInSec"] == 1 and params["numSamplesPerMS_HighRes"] == 8
        assert params["excitatorySynapseType"] == "NMDA"
        assert params["inhibitorySynapseType"] == "GABA_A"
        assert params["collectAndSaveDVTs"] is False
        types = params["allSegmentsType"]
        assert len(types) == N_SEG and types == ["basal"] * 262 + ["apical"] * 377
        for k in ("allSegmentsLength", "allSegments_DistFromSoma",
                  "allSegments_SectionDistFromSoma", "allSegments_SectionInd"):
            assert len(params[k]) == N_SEG
        assert len(params["allSectionsType"]) == len(params["allSectionsLength"]) == \
            len(params["allSections_DistFromSoma"]) == max(params["allSegments_SectionInd"]) + 1
        assert all(type(x) is np.float64 for x in params["listOfISIs"])
        assert params["totalNumOutputSpikes"] == sum(params["numOutputSpikesPerSim"])
        assert f"__{params['totalNumOutputSpikes']}_outSpikes__" in name
        sims = d["Results"]["listOfSingleSimulationDicts"]
        assert list(d["Results"]) == ["listOfSingleSimulationDicts"] and len(sims) == 2
        for s, n_out in zip(sims, params["numOutputSpikesPerSim"]):
            assert set(s) == set(SIM_DTYPES) | {"exInputSpikeTimes", "inhInputSpikeTimes"}
            for k, dt in SIM_DTYPES.items():
                assert isinstance(s[k], np.ndarray) and s[k].dtype == dt, k
            assert s["recordingTimeHighRes"].shape == s["somaVoltageHighRes"].shape == (8000,)
            assert s["recordingTimeLowRes"].shape == s["nexusVoltageLowRes"].shape == (1000,)
            assert np.allclose(s["recordingTimeHighRes"], np.arange(8000) / 8.0)
            assert len(s["outputSpikeTimes"]) == n_out
            for key in ("exInputSpikeTimes", "inhInputSpikeTimes"):
                spikes = s[key]
                assert isinstance(spikes, dict) and len(spikes) > 0
                for seg, times in spikes.items():
                    assert type(seg) is np.int64 and 0 <= seg < N_SEG
                    assert isinstance(times, list) and len(times) > 0
                    assert all(type(t) is np.int64 for t in times)
                    assert all(0 <= t < 1000 for t in times)
                    assert times == sorted(set(times))  # at most one spike per ms
        sidecar = json.loads((out / (name[:-2] + ".json")).read_text())
        assert sidecar["complete"] and sidecar["file_seed"] == seed
        assert [m["seed_sequence"] for m in sidecar["simulations"]] == [[seed, 0], [seed, 1]]
        assert sidecar["output"]["bytes"] == os.path.getsize(out / name)


def test_input_rates_match_protocol(run1):
    out, _ = run1
    ex_hz, inh_hz = [], []
    for name in pickles(out):
        _, d = load(out / name)
        for s in d["Results"]["listOfSingleSimulationDicts"]:
            ex = sum(len(v) for v in s["exInputSpikeTimes"].values())
            inh = sum(len(v) for v in s["inhInputSpikeTimes"].values())
            ex_hz.append(ex / N_SEG)
            inh_hz.append(inh / N_SEG)
            for rows in (range(0, 262), range(262, N_SEG)):
                e = sum(len(s["exInputSpikeTimes"].get(np.int64(i), [])) for i in rows) / 10.0
                i_ = sum(len(s["inhInputSpikeTimes"].get(np.int64(i), [])) for i in rows) / 10.0
                assert 0 < e < 800 and 0 <= i_ < 1000  # spikes per tree per 100 ms
    assert 3 < np.mean(ex_hz) < 25 and 1 < np.mean(inh_hz) < 20


def test_workers_give_identical_files(run1, mech, tmp_path):
    out1, _ = run1
    out2 = tmp_path / "out2"
    r = simulate(base_cfg(mech), out2, tmp_path, "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert pickles(out1) == pickles(out2)
    for name in pickles(out1):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name


def test_mpi_ranks_give_identical_files(run1, mech, tmp_path):
    assert shutil.which("mpirun"), "mpirun not installed (openmpi-bin, scripts/install-deps.sh --neuron)"
    out1, _ = run1
    out3 = tmp_path / "out3"
    r = simulate(base_cfg(mech), out3, tmp_path, mpi=2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MPI: 2 ranks" in r.stderr
    assert pickles(out1) == pickles(out3)
    for name in pickles(out1):
        assert (out1 / name).read_bytes() == (out3 / name).read_bytes(), name
    # an error found by rank 0 ends every rank (no hang), with status 2
    r = simulate(base_cfg(mech), out3, tmp_path, mpi=2)
    assert r.returncode != 0 and "--resume" in r.stderr


def test_resume_skips_complete_files(run1, mech, tmp_path):
    out, _ = run1
    before = {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)}
    r = simulate(base_cfg(mech), out, tmp_path, "--resume")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("complete, skipped") == 2
    assert {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)} == before
    # without --resume an existing file is an error, not a silent overwrite
    r = simulate(base_cfg(mech), out, tmp_path)
    assert r.returncode == 2 and "--resume" in r.stderr
    # a different configuration in the same folder is refused
    r = simulate(base_cfg(mech, solver={"dt": 0.05}), out, tmp_path, "--resume")
    assert r.returncode == 2 and "another configuration" in r.stderr


def test_resume_completes_missing_file(run1, mech, tmp_path):
    out1, _ = run1
    out = tmp_path / "partial"
    out.mkdir()
    first = pickles(out1)[0]
    for n in (first, first[:-2] + ".json"):
        shutil.copy(out1 / n, out / n)
    (out / (pickles(out1)[1] + ".tmp-999")).write_bytes(b"junk")  # interrupted write
    r = simulate(base_cfg(mech), out, tmp_path, "--resume")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("complete, skipped") == 1
    assert sorted(os.listdir(out)) == sorted(os.listdir(out1))
    for name in pickles(out1):
        assert (out1 / name).read_bytes() == (out / name).read_bytes()


def marked_processes(marker):
    """PIDs of live processes whose environment holds `marker` (inherited by every descendant: the
    generator and its spawned workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read()
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z" and int(pid) != os.getpid():
            found.append(int(pid))
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_cli_takes_its_generator_with_it_when_killed(mech, tmp_path, sig):
    """`elmneuron simulate` killed (SIGKILL) or told to stop (SIGTERM): its generator and workers stop too,
    instead of writing on beside the next run; on SIGTERM the CLI itself ends by that signal. The output path
    has a quote in it, which once broke the shell command line."""
    cli = os.environ.get("ELM_CLI", os.path.join(REPO, "build", "elmneuron"))
    assert os.path.exists(cli), f"elmneuron CLI not built at {cli}"
    out = tmp_path / "it's out"
    cfg_path = tmp_path / "kill.json"
    cfg_path.write_text(json.dumps(base_cfg(mech, num_files=6, simulations_per_file=2)))
    marker = f"{os.getpid()}_{time.time_ns()}"
    env = dict(os.environ, ELM_TEST_KILL_MARK=marker)
    proc = subprocess.Popen([cli, "simulate", "--config", str(cfg_path), "--out", str(out), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while not (out.is_dir() and pickles(out)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped"
    assert len(marked_processes(marker)) >= 4, "expected the CLI, the generator and its two workers"
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == -sig
    deadline = time.time() + 30
    while marked_processes(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert marked_processes(marker) == [], "the generator or its workers outlived the stopped CLI"
    assert len(pickles(out)) < 6


def test_cell_fires_like_published_files(mech, tmp_path):
    """Strong excitation: the cell must fire with realistic spikes; DVTs are recorded."""
    gen = {"num_bas_ex_spikes_per_100ms_range": [600, 800],
           "num_bas_ex_inh_spike_diff_per_100ms_range": [-600, -400],
           "num_apic_ex_spikes_per_100ms_range": [600, 800],
           "num_apic_ex_inh_spike_diff_per_100ms_range": [-600, -400]}
    cfg = base_cfg(mech, num_files=1, generator=gen, save_dvts=True)
    out = tmp_path / "strong"
    r = simulate(cfg, out, tmp_path)
    assert r.returncode == 0, r.stderr
    (name,) = pickles(out)
    assert "_InputSpikes_DVTs__" in name
    _, d = load(out / name)
    assert d["Params"]["collectAndSaveDVTs"] is True
    n_spikes = 0
    for s in d["Results"]["listOfSingleSimulationDicts"]:
        v = s["somaVoltageHighRes"].astype(np.float64)
        assert -85 < v.min() < -65 and 15 < v.max() < 50  # published: about -80 .. +33 mV
        t = s["outputSpikeTimes"].astype(np.float64)
        assert np.all(np.diff(t) > 1.0)  # refractoriness
        n_spikes += len(t)
        dvt = s["dendriticVoltagesLowRes"]
        assert dvt.dtype == np.float16 and dvt.shape == (N_SEG, 1000)
        assert np.allclose(dvt[:, 0], dvt[0, 0], atol=1.0)  # uniform initial state
        assert -90 < dvt.astype(float).min() and dvt.astype(float).max() < 60
    assert 1 <= n_spikes / 2 <= 250  # Hz, 2 simulations of 1 s: fires, no runaway


def test_cell_rests_without_input(mech, tmp_path):
    gen = {"num_bas_ex_spikes_per_100ms_range": [0, 0],
           "num_bas_ex_inh_spike_diff_per_100ms_range": [0, 0],
           "num_apic_ex_spikes_per_100ms_range": [0, 0],
           "num_apic_ex_inh_spike_diff_per_100ms_range": [0, 0]}
    out = tmp_path / "silent"
    r = simulate(base_cfg(mech, num_files=1, simulations_per_file=1, generator=gen), out, tmp_path)
    assert r.returncode == 0, r.stderr
    (name,) = pickles(out)
    _, d = load(out / name)
    s = d["Results"]["listOfSingleSimulationDicts"][0]
    assert s["exInputSpikeTimes"] == {} and s["inhInputSpikeTimes"] == {}
    v = s["somaVoltageLowRes"].astype(np.float64)
    assert len(s["outputSpikeTimes"]) == 0
    assert -80 < v.min() and v.max() < -70 and np.ptp(v[500:]) < 1.0  # rests near -76 mV


def test_bad_config_is_reported(mech, tmp_path):
    r = simulate(base_cfg(mech, bogus=1), tmp_path / "x", tmp_path)
    assert r.returncode == 2 and "unknown key 'bogus'" in r.stderr
    r = simulate(base_cfg(mech, duration_ms=1500), tmp_path / "x", tmp_path)
    assert r.returncode == 2 and "duration_ms" in r.stderr
    # Values of the wrong JSON type name their key (they were tracebacks, or for a flag silently true).
    for change, key in (({"synapses": {"excitatory": 5}}, "config.synapses.excitatory: expected an object"),
                        ({"synapses": {"excitatory": {"gmax": "big"}}}, "config.synapses.excitatory.gmax"),
                        ({"save_dvts": "false"}, "config.save_dvts: expected true or false"),
                        ({"spike_threshold_mv": "high"}, "config.spike_threshold_mv: expected a number"),
                        ({"cell_params": {"nope": 1}}, "config.cell_params")):
        r = simulate(base_cfg(mech, **change), tmp_path / "x", tmp_path)
        assert r.returncode == 2 and key in r.stderr and "Traceback" not in r.stderr, (change, r.stderr)


def test_bad_values_are_refused_before_simulating_and_divergence_after_it(mech, tmp_path):
    """Values the generator cannot honour are config errors naming the key (a seed numpy cannot take or the
    C++ reader could not read back, an hour-long simulation, a negative conductance, a key given twice); a
    cell that diverges (here: a negative leak conductance) is an error naming the simulation, not a file
    of infinite voltages."""
    for change, key in (({"seed": 2**40}, "config.seed"), ({"file_seeds": [1, 2**33]}, "config.file_seeds"),
                        ({"duration_ms": 3_600_000}, "config.duration_ms"),
                        ({"synapses": {"inhibitory": {"gmax": -1}}}, "config.synapses.inhibitory.gmax")):
        r = simulate(base_cfg(mech, **change), tmp_path / "x", tmp_path)
        assert r.returncode == 2 and key in r.stderr and "Traceback" not in r.stderr, (change, r.stderr)
    dup = tmp_path / "dup.json"
    dup.write_text('{"num_files": 1, "num_files": 2, "mechanisms": "%s"}' % mech)
    r = subprocess.run([sys.executable, os.path.join(TOOLS, "simulate.py"), "--config", str(dup), "--out",
                        str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "'num_files' given twice" in r.stderr, r.stderr
    out = tmp_path / "diverged"
    r = simulate(base_cfg(mech, num_files=1, simulations_per_file=1, cell_params={"g_pas": -1}), out, tmp_path)
    assert r.returncode == 2 and "not finite" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert pickles(out) == []


def test_a_pickle_of_the_same_seed_without_sidecar_is_never_overwritten(mech, tmp_path):
    """A data set file that happens to carry this run's seed (no JSON sidecar: not ours) stops the run before
    it simulates; it was deleted as an 'interrupted write' before."""
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "sim__saved_InputSpikes_DVTs__999_outSpikes__128_simulationRuns__6_secDuration__randomSeed_4242.p"
    theirs.write_bytes(b"somebody's data")
    for extra in ((), ("--resume",)):
        r = simulate(base_cfg(mech), out, tmp_path, *extra)
        assert r.returncode == 2 and "no JSON sidecar" in r.stderr and theirs.name in r.stderr, r.stderr
        assert theirs.read_bytes() == b"somebody's data"


def test_ctrl_c_with_worker_processes_ends_cleanly_and_resumes(mech, tmp_path):
    """SIGINT to the process group (Ctrl-C) with 2 workers: the generator ends (it hung in the pool's
    terminate when the workers died of the signal themselves) with 130 and a message; --resume completes."""
    out = tmp_path / "out"
    cfg = base_cfg(mech, num_files=2, simulations_per_file=4, duration_ms=2000)
    cfg_path = tmp_path / "ctrl_c.json"
    cfg_path.write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, "simulate.py"), "--config", str(cfg_path),
                             "--out", str(out), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or not any(out.iterdir())):
        time.sleep(0.1)
    time.sleep(2)  # the workers are simulating
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the generator did not end within 60 s of Ctrl-C")
    assert proc.returncode == 130 and "interrupted" in err, err
    r = simulate(cfg, out, tmp_path, "--resume", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert len(pickles(out)) == 2


def test_plugin_cell(mech, tmp_path):
    """A user cell given with --cell: inputs follow its segment count."""
    mod = tmp_path / "tiny_cell.py"
    mod.write_text(
        "from neuron import h\n"
        "class Tiny:\n"
        "    v_init = -70.0\n"
        "    def __init__(self):\n"
        "        self.soma = h.Section(name='tsoma'); self.soma.L = self.soma.diam = 20\n"
        "        self.soma.insert('hh')\n"
        "        self.d = h.Section(name='tdend'); self.d.L = 200; self.d.diam = 1; self.d.nseg = 5\n"
        "        self.d.insert('pas'); self.d.connect(self.soma(1))\n"
        "    def segments(self): return list(self.d)\n"
        "    def soma_segment(self): return self.soma(0.5)\n")
    out = tmp_path / "tiny"
    r = simulate(base_cfg(mech, num_files=1, simulations_per_file=1), out, tmp_path,
                 "--cell", f"{mod}:Tiny")
    assert r.returncode == 0, r.stderr
    (name,) = pickles(out)
    _, d = load(out / name)
    assert d["Params"]["allSegmentsType"] == ["basal"] * 5
    s = d["Results"]["listOfSingleSimulationDicts"][0]
    assert set(int(k) for k in s["exInputSpikeTimes"]) <= set(range(5))


def test_original_rng_mode_replays_the_published_stream(mech, tmp_path):
    """rng 'original': np.random.seed(file_seed), simulations drawn in order (as the published
    script); identical with worker processes."""
    cfg = base_cfg(mech, num_files=1, rng="original")
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"orig{workers}"
        r = simulate(cfg, out, tmp_path, "--workers", workers)
        assert r.returncode == 0, r.stderr
        outs.append(out)
    (name,) = pickles(outs[0])
    assert pickles(outs[1]) == [name]
    assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    _, d = load(outs[0] / name)
    params = d["Params"]
    lengths = np.array(params["allSegmentsLength"])
    types = np.array(params["allSegmentsType"])
    rng = np.random.RandomState(4242)
    for s in d["Results"]["listOfSingleSimulationDicts"]:
        ex, inh, _ = inputs.generate_inputs(rng, 1000, lengths[types == "basal"],
                                            lengths[types == "apical"], inputs.GeneratorParams())
        assert s["exInputSpikeTimes"] == inputs.spikes_to_dict(ex)
        assert s["inhInputSpikeTimes"] == inputs.spikes_to_dict(inh)


def test_builds_missing_library(tmp_path):
    lib = tmp_path / "newbuild" / "libelmmech.so"
    out = tmp_path / "o"
    r = simulate(base_cfg(str(lib), num_files=1, simulations_per_file=1), out, tmp_path)
    assert r.returncode == 0, r.stderr
    assert lib.is_file() and len(pickles(out)) == 1


# --- round trip through the project's C++ NeuronIO reader --------------------------------------

def test_generated_files_load_in_the_cpp_reader(run1, tmp_path):
    """`elmneuron predict` reads each generated pickle with the C++ reader; the targets it reports must be the
    published conversion of what Python's pickle reads (spike bins int(t - 0.5), soma clipped at -55 mV, +67.7)."""
    import struct as _struct

    cli = os.environ.get("ELM_CLI", os.path.join(REPO, "build", "elmneuron"))
    models = os.environ.get("ELM_MODELS_DIR", os.path.join(REPO, "models", "official"))
    assert os.path.exists(cli), f"elmneuron CLI not built at {cli}"
    out, _ = run1
    for name in pickles(out):
        pred_dir = tmp_path / name
        r = subprocess.run([cli, "predict", "--model", os.path.join(models, "num_memory_1"), "--data",
                            str(out / name), "--out", str(pred_dir)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        (pred_file,) = list(pred_dir.iterdir())
        raw = pred_file.read_bytes()
        n = _struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        body = raw[8 + n:]

        def tensor(key):
            a, b = header[key]["data_offsets"]
            return np.frombuffer(body[a:b], dtype=np.float64).reshape(header[key]["shape"])

        _, d = load(out / name)
        sims = d["Results"]["listOfSingleSimulationDicts"]
        spike_true, soma_true = tensor("spike_true"), tensor("soma_true_mv")
        assert spike_true.shape == (len(sims), len(sims[0]["somaVoltageLowRes"]))
        for k, sim in enumerate(sims):
            expected = np.zeros(spike_true.shape[1])
            for t in sim["outputSpikeTimes"]:
                expected[int(t.astype(float) - 0.5)] = 1.0
            np.testing.assert_array_equal(spike_true[k], expected)
            soma = sim["somaVoltageLowRes"].astype(np.float64)
            np.testing.assert_array_equal(soma_true[k], np.minimum(soma, -55.0) + 67.7)
