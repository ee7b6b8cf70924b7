"""`elmneuron eval` against an independent transcription of the published NeuronIO evaluation
(ELM neuronio_eval_utils.py as described in reference/paper.md §5 and reference/datasets.md §1.8), in
numpy + scikit-learn. The transcription gets the model's raw outputs window by window from `elmneuron run`
(whose forward pass is checked against the published model by the parity test), and does the windowing,
stitching, soma re-scaling, filtering and metrics itself. Data: NeuronIO-layout pickles written here with
the published dict layout (639 segments -> 1278 inputs), evaluated with official models.

Run: ELM_CLI=build/elmneuron ELM_MODELS_DIR=models/official python3 -m pytest tests/neuronio
"""
import json
import os
import pickle
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
from neuronio_synth import NUM_SEGMENTS, write_neuronio_file
from sklearn.metrics import auc, explained_variance_score, mean_absolute_error, mean_squared_error, roc_curve

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLI = os.environ.get("ELM_CLI", os.path.join(REPO, "build", "elmneuron"))
MODELS = os.environ.get("ELM_MODELS_DIR", os.path.join(REPO, "models", "official"))


def parse_sim_experiment_file(path):
    """The published conversion: X (1278, T, S) binary, y_spike (T, S), y_soma (T, S)."""
    d = pickle.load(open(path, "rb"), encoding="latin1")
    sims = d["Results"]["listOfSingleSimulationDicts"]
    n_seg = len(d["Params"]["allSegmentsType"])
    T = len(sims[0]["somaVoltageLowRes"])
    X = np.zeros((2 * n_seg, T, len(sims)), dtype=bool)
    y_spike = np.zeros((T, len(sims)))
    y_soma = np.zeros((T, len(sims)))
    for k, sim in enumerate(sims):
        for seg, times in sim["exInputSpikeTimes"].items():
            X[int(seg), np.array(times, dtype=int), k] = 1
        for seg, times in sim["inhInputSpikeTimes"].items():
            X[n_seg + int(seg), np.array(times, dtype=int), k] = 1
        bins = np.array([int(t.astype(float) - 0.5) for t in sim["outputSpikeTimes"]], dtype=int)
        y_spike[bins, k] = 1.0
        y_soma[:, k] = sim["somaVoltageLowRes"]
    return X, y_spike, y_soma


def model_window_outputs(model, x, workdir):
    """Raw model outputs [S, W, 2] for input windows x [S, W, 1278] via `elmneuron run`."""
    inp, out = os.path.join(workdir, "win.npy"), os.path.join(workdir, "out.npy")
    np.save(inp, np.ascontiguousarray(x, dtype=np.float32))
    r = subprocess.run([CLI, "run", model, "--input", inp, "--output", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return np.load(out)


def published_eval(model, files, workdir, window=500, burn_in=150, ignore=500, max_spikes=24):
    spike_true, spike_pred, soma_true, soma_pred = [], [], [], []
    for path in files:
        X, y_spike, y_soma = parse_sim_experiment_file(path)
        y_soma[y_soma > -55.0] = -55.0
        y_soma_gt = (y_soma + 67.7).T  # (S, T), bias removed, no 0.1 scale
        x = np.transpose(X, (2, 1, 0)).astype(np.float32)
        x[:, :, NUM_SEGMENTS:] *= -1.0  # synapse type: +1 excitatory, -1 inhibitory
        S, T, _ = x.shape
        y1_hat = np.zeros((S, T))
        y2_hat = np.zeros((S, T))
        num_splits = int(2 + (T - window) / (window - burn_in))
        for k in range(num_splits):
            start = k * (window - burn_in)
            end = start + window
            cur = x[:, start:end, :]
            if cur.shape[1] < window:
                cur = np.concatenate([cur, np.zeros((S, window - cur.shape[1], cur.shape[2]), np.float32)], axis=1)
            y = model_window_outputs(model, cur, workdir)
            p1 = 1.0 / (1.0 + np.exp(-y[..., 0].astype(np.float64)))
            p2 = y[..., 1].astype(np.float64) / 0.1
            if k == 0:
                y1_hat[:, :end] = p1[:, :min(end, T)]
                y2_hat[:, :end] = p2[:, :min(end, T)]
            elif k == num_splits - 1:
                t0 = start + burn_in
                fill = T - t0
                y1_hat[:, t0:] = p1[:, burn_in:burn_in + fill]
                y2_hat[:, t0:] = p2[:, burn_in:burn_in + fill]
            else:
                t0 = start + burn_in
                y1_hat[:, t0:end] = p1[:, burn_in:]
                y2_hat[:, t0:end] = p2[:, burn_in:]
        y2_hat = (y2_hat - y2_hat.mean()) / y2_hat.std() * y_soma_gt.std() + y_soma_gt.mean()
        spike_true.append(y_spike.T)
        spike_pred.append(y1_hat)
        soma_true.append(y_soma_gt)
        soma_pred.append(y2_hat)
    spike_true = np.concatenate(spike_true)
    spike_pred = np.concatenate(spike_pred)
    soma_true = np.concatenate(soma_true)
    soma_pred = np.concatenate(soma_pred)
    counts = spike_true.sum(axis=1)
    keep = (counts >= 0) & (counts <= max_spikes)
    s_true = spike_true[keep, ignore:].ravel()
    s_pred = spike_pred[keep, ignore:].ravel()
    v_true = soma_true[keep, ignore:].ravel()
    v_pred = soma_pred[keep, ignore:].ravel()
    fpr, tpr, _ = roc_curve(s_true, s_pred)
    res = {"AUC": auc(fpr, tpr)}
    grid = np.linspace(0, 1, 20000)
    tpr_grid = np.interp(grid, fpr, tpr)
    for fp in (0.0025, 0.0100):
        i = max(1, int(np.argmin(np.abs(fpr - fp))))
        res["TP @ %.4f FP" % fp] = tpr[i]
        k = int(np.clip(np.argmin(np.abs(grid - fp)), 1, len(grid) - 1))
        res["AUC @ %.4f FP" % fp] = tpr_grid[:k].mean()
    res["soma_RMSE"] = np.sqrt(mean_squared_error(v_true, v_pred))
    res["soma_MAE"] = mean_absolute_error(v_true, v_pred)
    res["soma_explained_variance_percent"] = 100.0 * explained_variance_score(v_true, v_pred)
    return res


# (model, window, burn-in, ignored ms at the start, max spikes): the published settings, and others: no
# burn-in, many short steps between windows, a window longer than the simulations (one window), and a
# different scored part and spike filter.
PROTOCOLS = [("num_memory_1", 500, 150, 500, 24), ("num_memory_15", 500, 150, 500, 24),
             ("num_memory_1", 700, 0, 500, 24), ("num_memory_15", 1200, 1000, 500, 24),
             ("num_memory_1", 4000, 100, 500, 24), ("num_memory_15", 400, 150, 800, 30)]


@pytest.mark.parametrize("model_name,window,burn_in,ignore,max_spikes", PROTOCOLS)
def test_eval_matches_published_protocol(model_name, window, burn_in, ignore, max_spikes):
    assert os.path.exists(CLI), f"elmneuron CLI not built at {CLI}"
    model = os.path.join(MODELS, model_name)
    with tempfile.TemporaryDirectory() as tmp:
        files = [os.path.join(tmp, f"sim__test_{i}.p") for i in range(2)]
        for i, path in enumerate(files):
            write_neuronio_file(path, num_sims=5, duration_ms=3000, seed=100 + i)
        expected = published_eval(model, files, tmp, window, burn_in, ignore, max_spikes)
        out = os.path.join(tmp, "eval")
        subprocess.run([CLI, "eval", "--model", model, "--data", tmp, "--out", out, "--no-plots", "--window",
                        str(window), "--burn-in", str(burn_in), "--ignore-start", str(ignore), "--max-spikes",
                        str(max_spikes)], check=True, capture_output=True)
        ours = json.load(open(os.path.join(out, "eval_results.json")))["test_results"]
        assert set(ours) == set(expected)
        for key, value in expected.items():
            assert abs(ours[key] - value) <= 1e-6 * max(1.0, abs(value)), (key, ours[key], value)
        details = json.load(open(os.path.join(out, "eval_results.json")))["details"]
        assert details["simulations_total"] == 10
        assert details["simulations_kept"] == expected_kept(files, max_spikes)
        assert details["simulations_kept"] < 10 or max_spikes > 24
        assert details["scored_samples"] == details["simulations_kept"] * (3000 - ignore)


def test_eval_refuses_a_burn_in_that_outlasts_the_simulations():
    """With the burn-in longer than the simulations no window would run (the published loop count is
    int(2 + (T - W)/(W - B)) < 1) and every prediction would be the zeros it started from: refused, naming
    the option and the file's duration; nothing is written."""
    model = os.path.join(MODELS, "num_memory_1")
    with tempfile.TemporaryDirectory() as tmp:
        write_neuronio_file(os.path.join(tmp, "sim__test_0.p"), num_sims=2, duration_ms=1000, seed=7)
        out = os.path.join(tmp, "eval")
        for command in ("eval", "predict"):
            r = subprocess.run([CLI, command, "--model", model, "--data", tmp, "--out", out, "--window", "3000",
                                "--burn-in", "2500"], capture_output=True, text=True)
            assert r.returncode == 2, r.stderr
            assert "burn_in" in r.stderr and "1000 ms" in r.stderr and "sim__test_0.p" in r.stderr, r.stderr
            assert not os.path.exists(out) or os.listdir(out) == [], os.listdir(out)


def test_a_failed_eval_leaves_the_previous_report_whole():
    """An evaluation that stops on a broken file (or is killed) changes nothing of the report already in
    --out: no file of the new run beside the old run's files, no staging folder left behind."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        write_neuronio_file(os.path.join(data, "sim__a.p"), num_sims=2, duration_ms=1000, seed=7)
        out = os.path.join(tmp, "eval")
        r = subprocess.run([CLI, "eval", "--model", os.path.join(MODELS, "num_memory_1"), "--data", data, "--out",
                            out, "--no-plots"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        before = {name: open(os.path.join(out, name), "rb").read() for name in os.listdir(out)}
        assert set(before) == {"eval_results.json", "roc.csv", "example_traces.safetensors"}, before.keys()
        good = open(os.path.join(data, "sim__a.p"), "rb").read()
        open(os.path.join(data, "sim__b.p"), "wb").write(good[:len(good) // 2])  # truncated, read second
        r = subprocess.run([CLI, "eval", "--model", os.path.join(MODELS, "num_memory_15"), "--data", data,
                            "--out", out], capture_output=True, text=True)
        assert r.returncode == 2 and "sim__b.p" in r.stderr, r.stderr
        after = {name: open(os.path.join(out, name), "rb").read() for name in os.listdir(out)}
        assert after == before, sorted(after)


def expected_kept(files, max_spikes=24):
    kept = 0
    for path in files:
        _, y_spike, _ = parse_sim_experiment_file(path)
        kept += int(((y_spike.sum(axis=0) >= 0) & (y_spike.sum(axis=0) <= max_spikes)).sum())
    return kept


def test_eval_output_folder_that_cannot_be_made_is_a_clear_error():
    """--out under a regular file: status 2 naming the folder and nothing written (not an internal error)."""
    model = os.path.join(MODELS, "num_memory_1")
    with tempfile.TemporaryDirectory() as tmp:
        write_neuronio_file(os.path.join(tmp, "sim__test_0.p"), num_sims=2, duration_ms=1000, seed=7)
        blocker = os.path.join(tmp, "not_a_folder")
        open(blocker, "w").write("x")
        out = os.path.join(blocker, "eval")
        r = subprocess.run([CLI, "eval", "--model", model, "--data", tmp, "--out", out, "--no-plots"],
                           capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        assert out in r.stderr and "output folder" in r.stderr, r.stderr
        assert "internal error" not in r.stderr


def test_predict_and_eval_refuse_inputs_that_would_collide_or_count_twice():
    """Two inputs of one name (from two folders) would write one predictions file over the other; a file given
    twice (by itself and through its folder) would count its simulations twice in every metric."""
    model = os.path.join(MODELS, "num_memory_1")
    with tempfile.TemporaryDirectory() as tmp:
        for sub, seed in (("a", 7), ("b", 8)):
            os.makedirs(os.path.join(tmp, sub))
            write_neuronio_file(os.path.join(tmp, sub, "sim.p"), num_sims=2, duration_ms=1000, seed=seed)
        out = os.path.join(tmp, "pred")
        r = subprocess.run([CLI, "predict", "--model", model, "--data", os.path.join(tmp, "a"),
                            os.path.join(tmp, "b", "sim.p"), "--out", out], capture_output=True, text=True)
        assert r.returncode == 2 and "--data" in r.stderr and "distinct names" in r.stderr, r.stderr
        assert not os.path.exists(out)
        r = subprocess.run([CLI, "eval", "--model", model, "--data", os.path.join(tmp, "a"),
                            os.path.join(tmp, "a", "sim.p"), "--out", os.path.join(tmp, "ev"), "--no-plots"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "listed twice" in r.stderr, r.stderr
        # One folder each: both written.
        r = subprocess.run([CLI, "predict", "--model", model, "--data", os.path.join(tmp, "a"), "--out", out],
                           capture_output=True, text=True)
        assert r.returncode == 0 and os.listdir(out) == ["sim.predictions.safetensors"], r.stderr


def test_eval_without_plots_removes_those_of_an_earlier_evaluation():
    model = os.path.join(MODELS, "num_memory_1")
    with tempfile.TemporaryDirectory() as tmp:
        write_neuronio_file(os.path.join(tmp, "sim__test_0.p"), num_sims=2, duration_ms=1000, seed=7)
        out = os.path.join(tmp, "eval")
        os.makedirs(out)
        for stale in ("roc.png", "example_traces.png"):
            open(os.path.join(out, stale), "wb").write(b"an older evaluation's plot")
        r = subprocess.run([CLI, "eval", "--model", model, "--data", tmp, "--out", out, "--no-plots"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        names = os.listdir(out)
        assert "eval_results.json" in names and "roc.png" not in names and "example_traces.png" not in names, names


def test_eval_of_a_subthreshold_set_gives_the_soma_metrics_and_null_spike_metrics():
    """No output spike at all (a subthreshold test set): the published code's scikit-learn calls warn and give
    NaN spike metrics; ours are null in eval_results.json with the reason, the soma metrics match the
    transcription, and no ROC is plotted (a stale roc.png is removed)."""
    model = os.path.join(MODELS, "num_memory_1")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        files = [os.path.join(data, "sim__quiet.p")]
        write_neuronio_file(files[0], num_sims=3, duration_ms=2000, seed=11, fire=False)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = published_eval(model, files, tmp)
        out = os.path.join(tmp, "eval")
        os.makedirs(out)
        open(os.path.join(out, "roc.png"), "wb").write(b"an older evaluation's plot")
        r = subprocess.run([CLI, "eval", "--model", model, "--data", data, "--out", out], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        assert "warning" in r.stderr and "no output spike" in r.stderr, r.stderr
        results = json.load(open(os.path.join(out, "eval_results.json")))
        ours = results["test_results"]
        assert set(ours) == set(expected)
        for key, value in expected.items():
            if key.startswith("soma_"):
                assert abs(ours[key] - value) <= 1e-6 * max(1.0, abs(value)), (key, ours[key], value)
            else:
                assert np.isnan(value) and ours[key] is None, (key, ours[key], value)
        assert "no output spike" in results["details"]["spike_metrics_undefined"]
        assert results["details"]["simulations_kept"] == 3
        names = os.listdir(out)
        assert "roc.png" not in names and "example_traces.png" in names, names
        assert open(os.path.join(out, "roc.csv")).read() == "fpr,tpr,threshold\n"
