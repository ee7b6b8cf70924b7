"""`elmneuron train` on a small NeuronIO-layout data set: the loss goes down and validation AUC goes up;
a run killed with SIGKILL and continued with --resume ends bit-identical to an uninterrupted run."""
import csv
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import numpy as np
import pytest
from neuronio_synth import write_neuronio_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.environ.get("ELM_CLI", os.path.join(REPO, "build", "elmneuron"))


@pytest.fixture(scope="module")
def data():
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "train"), exist_ok=True)
        for i in range(2):
            write_neuronio_file(os.path.join(tmp, "train", f"sim__{i}.p"), num_sims=10, duration_ms=2000, seed=10 + i)
        os.makedirs(os.path.join(tmp, "valid"), exist_ok=True)
        write_neuronio_file(os.path.join(tmp, "valid", "sim__v.p"), num_sims=8, duration_ms=2000, seed=99)
        yield tmp


def write_config(tmp, name, epochs, steps, checkpoint_every=50):
    cfg = {
        "model": {"num_input": 1278, "num_output": 2, "num_memory": 10, "num_branch": 45,
                  "num_synapse_per_branch": 100, "input_to_synapse_routing": "neuronio_routing",
                  "memory_tau_max": 150.0, "_why_dm_10": "small and fast"},
        "_comment": "notes (keys starting with _) are allowed in every section, as in the configs/ files",
        "train": {"_lr": "a note", "batch_size": 8, "batches_per_epoch": steps, "num_epochs": epochs,
                  "learning_rate": 0.003,
                  "checkpoint_every": checkpoint_every, "threads": 1, "seed": 3, "num_prefetch_batch": 4},
        "data": {"_note": "synthetic files", "train": os.path.join(tmp, "train"), "valid": os.path.join(tmp, "valid"),
                 "cache_dir": os.path.join(tmp, "cache")},
        "out_dir": os.path.join(tmp, name),
    }
    path = os.path.join(tmp, name + ".json")
    json.dump(cfg, open(path, "w"))
    return path, cfg["out_dir"]


def read_tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    header.pop("__metadata__", None)
    return {k: body[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items()}


def test_training_lowers_loss_and_raises_validation_auc(data):
    cfg, out = write_config(data, "learn", epochs=3, steps=120)
    subprocess.run([CLI, "train", "--config", cfg, "--no-plots"], check=True, capture_output=True)
    rows = list(csv.DictReader(open(os.path.join(out, "train_log.csv"))))
    loss = np.array([float(r["loss"]) for r in rows])
    assert len(loss) == 360
    assert loss[-40:].mean() < 0.5 * loss[:40].mean()
    valid = list(csv.DictReader(open(os.path.join(out, "valid_log.csv"))))
    auc = [float(r["AUC"]) for r in valid]
    assert len(auc) == 3 and auc[-1] > auc[0] and auc[-1] > 0.8, auc
    results = json.load(open(os.path.join(out, "eval_results.json")))
    # The best epoch by the default select_metric, soma_RMSE, found here from valid_log.csv (the first of equal
    # minima), and best_model.safetensors is that epoch's model: `elmneuron eval` of it on the validation
    # data gives that row's metrics.
    rmse = [float(r["soma_RMSE"]) for r in valid]
    assert results["select_metric"] == "soma_RMSE"
    assert results["best_epoch"] == 1 + int(np.argmin(rmse)), (results["best_epoch"], rmse)
    best_row = valid[int(np.argmin(rmse))]
    for key in ("AUC", "soma_RMSE"):
        assert results["valid_results"][key] == pytest.approx(float(best_row[key]), rel=2e-5), key
    r = subprocess.run([CLI, "eval", "--model", os.path.join(out, "best_model.safetensors"), "--data",
                        os.path.join(data, "valid"), "--out", os.path.join(out, "eval_best"), "--no-plots"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    again = json.load(open(os.path.join(out, "eval_best", "eval_results.json")))["test_results"]
    for key in ("AUC", "soma_RMSE", "soma_explained_variance_percent"):
        assert again[key] == pytest.approx(float(best_row[key]), rel=2e-5), key
    for name in ("best_model.safetensors", "final_model.safetensors", "checkpoint.safetensors", "config.json"):
        assert os.path.exists(os.path.join(out, name))


def checkpoint_step(out):
    try:
        with open(os.path.join(out, "checkpoint.safetensors"), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            return int(json.loads(f.read(n))["__metadata__"]["step"])
    except (OSError, ValueError, KeyError, struct.error):
        return 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_and_resume_is_bit_identical(data, sig):
    """SIGKILL: resumed from the last checkpoint. SIGINT (Ctrl-C; SIGTERM alike): the step in progress
    finishes, a checkpoint is written at it and the run ends by the signal, saying where it stopped."""
    cfg_a, out_a = write_config(data, "straight", epochs=2, steps=40, checkpoint_every=5)
    if not os.path.exists(os.path.join(out_a, "final_model.safetensors")):
        subprocess.run([CLI, "train", "--config", cfg_a, "--no-plots"], check=True, capture_output=True)

    cfg_b, out_b = write_config(data, f"killed_{sig}", epochs=2, steps=40, checkpoint_every=5)
    proc = subprocess.Popen([CLI, "train", "--config", cfg_b, "--no-plots"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while checkpoint_step(out_b) < 25 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, sig)
    _, err = proc.communicate()
    assert proc.returncode == -sig, (proc.returncode, err)
    killed_at = checkpoint_step(out_b)
    assert 25 <= killed_at < 80
    if sig == signal.SIGINT:
        assert f"stopped at step {killed_at} of 80" in err and "--resume" in err, err
        assert len(list(csv.reader(open(os.path.join(out_b, "train_log.csv"))))) == 1 + killed_at
    r = subprocess.run([CLI, "train", "--config", cfg_b, "--resume", "--no-plots"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    a, b = read_tensors(os.path.join(out_a, "final_model.safetensors")), read_tensors(
        os.path.join(out_b, "final_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], f"{k} differs after kill at step {killed_at} and resume"
    # The logs continue as if never interrupted (the rate column differs, the rest must not).
    la = [r[:-1] for r in csv.reader(open(os.path.join(out_a, "train_log.csv")))]
    lb = [r[:-1] for r in csv.reader(open(os.path.join(out_b, "train_log.csv")))]
    assert la == lb


def test_unwritable_output_folder_is_a_clear_error_before_training(data):
    """An out_dir that cannot be created (here: under a regular file) is a usage error (status 2) naming the
    folder, before any training step; before, it was an internal error (status 1) from the filesystem."""
    blocker = os.path.join(data, "not_a_folder")
    open(blocker, "w").write("x")
    cfg, _ = write_config(data, "blocked", epochs=1, steps=5)
    settings = json.load(open(cfg))
    settings["out_dir"] = os.path.join(blocker, "run")
    json.dump(settings, open(cfg, "w"))
    r = subprocess.run([CLI, "train", "--config", cfg, "--no-plots"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert settings["out_dir"] in r.stderr and "out_dir" in r.stderr, r.stderr
    assert "internal error" not in r.stderr


def run_train(cfg, *extra):
    return subprocess.run([CLI, "train", "--config", cfg, "--no-plots", *extra], capture_output=True, text=True)


def dtypes(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return {v["dtype"] for v in header.values()}


def test_every_training_setting_changes_the_run(data):
    """Each optional setting reaches the training step: the same 6-step run with it differs from the run
    without it (a setting silently ignored would give the default run's model bit for bit), and precision
    f64 trains and saves float64 parameters."""
    runs = {"default": {}, "weight_decay": {"weight_decay": 0.5}, "clip": {"clip_grad_norm": 1e-3},
            "loss_burn_in": {"loss_burn_in": 450}, "adamax": {"optimizer": "adamax"},
            "constant_lr": {"schedule": "constant"}, "f64": {"precision": "f64"},
            "window": {"input_window_size": 400}, "starts": {"ignore_time_from_start": 100},
            "file_switching": {"file_load_fraction": 1.0}, "eval_burn_in": {"burn_in_time": 50}}
    models, valid_logs = {}, {}
    for name, extra in runs.items():
        cfg, out = write_config(data, "setting_" + name, epochs=1, steps=6)
        settings = json.load(open(cfg))
        settings["train"].update(extra)
        json.dump(settings, open(cfg, "w"))
        r = run_train(cfg)
        assert r.returncode == 0, (name, r.stderr)
        models[name] = read_tensors(os.path.join(out, "final_model.safetensors"))
        valid_logs[name] = open(os.path.join(out, "valid_log.csv")).read()
        # The parameters' dtype (the routing's indices and mask are I64 and BOOL whatever the precision).
        assert dtypes(os.path.join(out, "final_model.safetensors")) - {"I64", "BOOL"} == \
            ({"F64"} if name == "f64" else {"F32"})
    for name in runs:
        if name == "eval_burn_in":  # the validation windows' burn-in: same training, other validation metrics
            assert models[name] == models["default"] and valid_logs[name] != valid_logs["default"]
        elif name != "default":
            assert models[name] != models["default"], name


def test_a_folder_holding_a_run_is_not_overwritten_without_resume(data):
    """Forgetting --resume after a kill used to restart at step 0 over the old run's files."""
    cfg, out = write_config(data, "keep", epochs=1, steps=10)
    assert run_train(cfg).returncode == 0
    before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out) if not n.startswith(".")}
    r = run_train(cfg)
    assert r.returncode == 2, r.stderr
    assert out in r.stderr and "out_dir" in r.stderr and "--resume" in r.stderr, r.stderr
    after = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out) if not n.startswith(".")}
    assert after == before
    # --resume of a finished run trains no further step and repeats only the final evaluation.
    os.remove(os.path.join(out, "eval_results.json"))
    r = run_train(cfg, "--resume")
    assert r.returncode == 0, r.stderr
    assert json.load(open(os.path.join(out, "eval_results.json"))) == json.loads(before["eval_results.json"])
    for name in ("train_log.csv", "best_model.safetensors", "final_model.safetensors", "checkpoint.safetensors"):
        assert open(os.path.join(out, name), "rb").read() == before[name], name
    # Every step logs the gradient's norm (before, 0 unless clip_grad_norm was set).
    norms = [float(row["grad_norm"]) for row in csv.DictReader(open(os.path.join(out, "train_log.csv")))]
    assert len(norms) == 10 and all(np.isfinite(norms)) and min(norms) > 0


def test_resume_housekeeping(data):
    cfg, out = write_config(data, "house", epochs=2, steps=10, checkpoint_every=5)
    settings = json.load(open(cfg))
    own_train = os.path.join(data, "train_house")  # this run's own folder of training files
    shutil.copytree(settings["data"]["train"], own_train)
    settings["data"]["train"] = own_train
    json.dump(settings, open(cfg, "w"))
    assert run_train(cfg, "--stop-after-steps", "5").returncode == 0
    # Temporary files of killed writers are removed; a live process's are not.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(out, f"checkpoint.safetensors.tmp.{dead.pid}.3")
    live = os.path.join(out, f"valid_log.csv.tmp.{os.getpid()}.0")
    for path in (stale, live):
        open(path, "wb").write(b"half")
    # A second job on the same folder is refused while the first holds it.
    with open(os.path.join(out, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = run_train(cfg, "--resume")
        assert r.returncode == 2 and "locked" in r.stderr, r.stderr
    # Training files that changed since the run started: refused, naming the checkpoint's record.
    added = os.path.join(own_train, "sim__2.p")
    write_neuronio_file(added, num_sims=10, duration_ms=2000, seed=12)
    r = run_train(cfg, "--resume")
    assert r.returncode == 2 and "train_files" in r.stderr and "sim__2.p" in r.stderr, r.stderr
    os.remove(added)
    # data.test only feeds the final evaluation: it may be set or fixed before resuming.
    settings["data"]["test"] = settings["data"]["valid"]
    json.dump(settings, open(cfg, "w"))
    r = run_train(cfg, "--resume")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(stale) and os.path.exists(live)
    assert "test_results" in json.load(open(os.path.join(out, "eval_results.json")))


def test_a_broken_validation_file_stops_the_run_before_training(data):
    """The validation files are read before the first step: a truncated one used to surface only at the end
    of the first epoch, after that epoch's training time."""
    broken_valid = os.path.join(data, "valid_broken")
    os.makedirs(broken_valid, exist_ok=True)
    good = open(os.path.join(data, "valid", "sim__v.p"), "rb").read()
    open(os.path.join(broken_valid, "sim__v.p"), "wb").write(good[: len(good) // 2])
    cfg, out = write_config(data, "broken_valid", epochs=1, steps=10)
    settings = json.load(open(cfg))
    settings["data"]["valid"] = broken_valid
    json.dump(settings, open(cfg, "w"))
    r = run_train(cfg)
    assert r.returncode == 2, r.stderr
    assert os.path.join(broken_valid, "sim__v.p") in r.stderr, r.stderr
    assert "internal error" not in r.stderr
    log = os.path.join(out, "train_log.csv")
    assert not os.path.exists(log) or len(open(log).read().splitlines()) <= 1  # no training step ran


def test_a_validation_set_without_output_spikes(data):
    """Subthreshold validation data: the spike metrics are undefined (NaN, as the published scikit-learn code
    gives). Selecting by soma_RMSE (the default) trains, says so, logs them as nan and names the reason in
    eval_results.json; selecting by AUC is refused before the first step, naming the setting."""
    quiet = os.path.join(data, "valid_quiet")
    os.makedirs(quiet, exist_ok=True)
    write_neuronio_file(os.path.join(quiet, "sim__q.p"), num_sims=8, duration_ms=2000, seed=98, fire=False)
    for metric in ("soma_RMSE", "AUC"):
        cfg, out = write_config(data, "quiet_valid_" + metric, epochs=1, steps=2)
        settings = json.load(open(cfg))
        settings["data"]["valid"] = quiet
        settings["train"]["select_metric"] = metric
        json.dump(settings, open(cfg, "w"))
        r = run_train(cfg)
        if metric == "soma_RMSE":
            assert r.returncode == 0, r.stderr
            assert "warning: validation data: no output spike" in r.stdout + r.stderr
            rows = list(csv.DictReader(open(os.path.join(out, "valid_log.csv"))))
            assert len(rows) == 1 and np.isnan(float(rows[0]["AUC"])), rows
            assert np.isfinite(float(rows[0]["soma_RMSE"])), rows
            assert os.path.exists(os.path.join(out, "best_model.safetensors"))
            results = json.load(open(os.path.join(out, "eval_results.json")))
            assert results["valid_results"]["AUC"] is None and results["valid_results"]["soma_RMSE"] > 0
            assert "no output spike" in results["valid_spike_metrics_undefined"], results
        else:
            assert r.returncode == 2, r.stderr
            assert "train.select_metric" in r.stderr and "soma_RMSE" in r.stderr, r.stderr
            assert "internal error" not in r.stderr
            log = os.path.join(out, "train_log.csv")
            assert not os.path.exists(log) or len(open(log).read().splitlines()) <= 1  # no training step ran


def test_resume_refuses_other_validation_data_and_names_a_changed_setting(data):
    """The validation files choose the best model in every epoch: a resumed run on other ones (here: more
    simulations, so another size) would pick it across two data sets. A changed config is refused naming the
    key that differs."""
    with tempfile.TemporaryDirectory() as own:
        valid = os.path.join(own, "valid")
        os.makedirs(valid)
        write_neuronio_file(os.path.join(valid, "sim__v.p"), num_sims=4, duration_ms=2000, seed=5)
        cfg, out = write_config(data, "revalid", epochs=2, steps=10, checkpoint_every=5)
        settings = json.load(open(cfg))
        settings["data"]["valid"] = valid
        json.dump(settings, open(cfg, "w"))
        assert run_train(cfg, "--stop-after-steps", "5").returncode == 0
        write_neuronio_file(os.path.join(valid, "sim__v.p"), num_sims=6, duration_ms=2000, seed=6)
        r = run_train(cfg, "--resume")
        assert r.returncode == 2 and "valid_files" in r.stderr and "sim__v.p" in r.stderr, r.stderr
        write_neuronio_file(os.path.join(valid, "sim__v.p"), num_sims=4, duration_ms=2000, seed=5)
        settings["train"]["learning_rate"] = 0.001
        json.dump(settings, open(cfg, "w"))
        r = run_train(cfg, "--resume")
        assert r.returncode == 2 and "train.learning_rate: 0.003 in the checkpoint, 0.001 here" in r.stderr, \
            r.stderr
        settings["train"]["learning_rate"] = 0.003
        json.dump(settings, open(cfg, "w"))
        r = run_train(cfg, "--resume")
        assert r.returncode == 0, r.stderr
