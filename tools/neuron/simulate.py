#!/usr/bin/python3
"""Generate NeuronIO-protocol data (Beniaguev et al. 2021) with the NEURON simulator.

  python3 tools/neuron/simulate.py --config FILE.json --out DIR [--workers N] [--resume]
                                   [--cell module.py:ClassName] [--mechanisms LIB.so]
  mpirun -np R python3 tools/neuron/simulate.py --config FILE.json --out DIR [--resume]

Writes one pickle per file (protocol 2, the published layout; datasets.md section 1.4) plus a
JSON sidecar with every parameter, seed and timing. A simulation's inputs depend only on
(file seed, simulation index), and each simulation starts from finitialize, so the pickles are
byte-identical whatever the number of workers or MPI ranks. See tools/neuron/README.md.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import multiprocessing as mp
import os
import pickle
import platform
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")

import numpy as np  # noqa: E402

import inputs  # noqa: E402
import neuronio_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_CELL = os.path.join(HERE, "cell.py") + ":L5PCReduced"
DEFAULT_MECH = os.path.join(REPO, "build", "neuron", "libelmmech.so")

# Protocol values (datasets.md 1.3); everything here can be overridden by the config file.
DEFAULTS = {
    "num_files": 1,
    "simulations_per_file": 128,
    "duration_ms": 6000,
    "seed": 100520,            # file k gets seed + k unless file_seeds is given
    "file_seeds": None,
    "cell": DEFAULT_CELL,
    "cell_params": {},         # keyword arguments for the cell class (e.g. L5PCReduced.params)
    "mechanisms": DEFAULT_MECH,
    "build_mechanisms": True,  # build the library with build_mechanisms.sh if it is missing
    "save_dvts": False,        # dendriticVoltagesLowRes (n_segments x duration float16 per sim)
    "samples_per_ms_high_res": 8,
    "spike_threshold_mv": -25.0,
    "rng": "per_simulation",   # or "original": one legacy stream per file, as the published script
    "deterministic_timing": True,  # Params.entireExperimentDurationInMinutes = 0 (bytes reproducible)
    "solver": {"dt": 0.1, "secondorder": 2},
    "synapses": {
        "excitatory": {"gmax": 0.0004, "tau_r_ampa": 0.3, "tau_d_ampa": 3.0,
                       "tau_r_nmda": 2.0, "tau_d_nmda": 70.0, "e": 0.0, "mg": 1.0},
        "inhibitory": {"gmax": 0.001, "tau_r": 0.2, "tau_d": 8.0, "e": -80.0},
    },
    "generator": {},           # inputs.GeneratorParams fields
}


MAX_DURATION_MS = 600_000


class ConfigError(ValueError):
    pass


def log(msg: str) -> None:
    print(f"simulate: {msg}", file=sys.stderr, flush=True)


# --- configuration ---------------------------------------------------------------------------

def check_type(name: str, default, value) -> None:
    """A config value must have its default's JSON type (a number where a number is expected, true/false where
    a flag is: the string "false" would otherwise count as true); objects are checked key by key where the
    defaults list their keys (unknown keys are errors, keys starting with _ comments). name: the value's key
    path, "" for the whole config."""
    label = f"config.{name}" if name else "config"
    if default is None:
        return
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, what = isinstance(value, str), "a string"
    elif isinstance(default, dict):
        ok, what = isinstance(value, dict), "an object"
    else:
        ok, what = isinstance(value, list), "a list"
    if not ok:
        raise ConfigError(f"{label}: expected {what}, got {json.dumps(value)}")
    if isinstance(default, dict) and default:
        for key, v in value.items():
            if key.startswith("_"):
                continue
            if key not in default:
                raise ConfigError(f"{label}: unknown key '{key}' (known: {', '.join(sorted(default))})")
            check_type(f"{name}.{key}" if name else key, default[key], v)


def _unique_keys(pairs):
    """json.load's object hook: a key given twice is an error (json keeps the last value silently)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"key '{key}' given twice in one object")
        out[key] = value
    return out


def load_config(path: str | None, overrides: dict) -> dict:
    cfg = json.loads(json.dumps(DEFAULTS))
    user = {}
    if path:
        with open(path) as f:
            try:
                user = json.load(f, object_pairs_hook=_unique_keys)
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
            except ValueError as e:
                raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: expected a JSON object")
    user.update({k: v for k, v in overrides.items() if v is not None})
    check_type("", DEFAULTS, user)  # keys and types, at every level the defaults describe
    for key, value in user.items():
        if key.startswith("_"):  # comments
            continue
        if key in ("solver", "synapses"):  # merged into the defaults, one level deeper
            for sub, v in value.items():
                if sub.startswith("_"):
                    continue
                if isinstance(cfg[key][sub], dict):
                    cfg[key][sub].update({k2: v2 for k2, v2 in v.items() if not k2.startswith("_")})
                else:
                    cfg[key][sub] = v
        else:
            cfg[key] = value
    return validate_config(cfg)


def validate_config(cfg: dict) -> dict:
    def positive_int(name):
        v = cfg[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"config.{name}: expected a positive integer, got {v!r}")

    for name in ("num_files", "simulations_per_file", "duration_ms", "samples_per_ms_high_res"):
        positive_int(name)
    if cfg["duration_ms"] > MAX_DURATION_MS:
        raise ConfigError(f"config.duration_ms: expected at most {MAX_DURATION_MS} ms (10 minutes) per "
                          f"simulation, got {cfg['duration_ms']}")
    if cfg["duration_ms"] % 1000:
        raise ConfigError(f"config.duration_ms: must be a whole number of seconds (the file layout "
                          f"stores totalSimDurationInSec as an integer), got {cfg['duration_ms']}")
    if cfg["file_seeds"] is None:
        if (not isinstance(cfg["seed"], int) or isinstance(cfg["seed"], bool) or cfg["seed"] < 0
                or cfg["seed"] + cfg["num_files"] > 2**32):
            raise ConfigError(f"config.seed: expected an integer in [0, 2^32 - num_files] (numpy's seeds), "
                              f"got {cfg['seed']!r}")
        cfg["file_seeds"] = [cfg["seed"] + k for k in range(cfg["num_files"])]
    else:
        seeds = cfg["file_seeds"]
        if (not isinstance(seeds, list) or len(seeds) != cfg["num_files"]
                or any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < 2**32 for s in seeds)):
            raise ConfigError("config.file_seeds: expected num_files integers in [0, 2^32) (numpy's seeds)")
        if len(set(seeds)) != len(seeds):
            raise ConfigError("config.file_seeds: seeds must be distinct")
    for kind in ("excitatory", "inhibitory"):  # a negative conductance makes the cell diverge
        for key, v in cfg["synapses"][kind].items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ConfigError(f"config.synapses.{kind}.{key}: expected a finite number, got {v!r}")
            if (key == "gmax" or key.startswith("tau") or key == "mg") and v < 0:
                raise ConfigError(f"config.synapses.{kind}.{key}: expected a value >= 0, got {v!r}")
    if cfg["rng"] not in ("per_simulation", "original"):
        raise ConfigError(f"config.rng: expected 'per_simulation' or 'original', got {cfg['rng']!r}")
    dt = cfg["solver"]["dt"]
    if not isinstance(dt, (int, float)) or dt <= 0 or abs(round(1.0 / dt) * dt - 1.0) > 1e-9:
        raise ConfigError(f"config.solver.dt: expected a positive step dividing 1 ms, got {dt!r}")
    if cfg["solver"]["secondorder"] not in (0, 1, 2):
        raise ConfigError("config.solver.secondorder: expected 0 (backward Euler), 1 or 2 "
                          "(Crank-Nicolson)")
    try:
        cfg["_generator"] = inputs.GeneratorParams.from_dict(cfg["generator"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.generator: {e}") from None
    if not isinstance(cfg["cell_params"], dict):
        raise ConfigError("config.cell_params: expected an object")
    if ":" not in cfg["cell"]:
        raise ConfigError(f"config.cell: expected 'module.py:ClassName', got {cfg['cell']!r}")
    return cfg


def public_config(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def fingerprint(cfg: dict, layout: dict) -> str:
    """What determines a file's content (not: num_files, workers, timing flags)."""
    keys = ("simulations_per_file", "duration_ms", "save_dvts", "samples_per_ms_high_res",
            "spike_threshold_mv", "rng", "solver", "synapses", "deterministic_timing")
    d = {k: cfg[k] for k in keys}
    d["generator"] = vars(cfg["_generator"])
    d["cell"] = cfg.get("_cell_description")
    d["cell_params"] = cfg["cell_params"]
    d["layout"] = layout
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def ensure_mechanisms(cfg: dict) -> None:
    lib = cfg["mechanisms"]
    if os.path.isfile(lib) and not cfg["build_mechanisms"]:
        return
    if not cfg["build_mechanisms"]:
        raise ConfigError(f"mechanism library {lib} not found (build it with "
                          f"tools/neuron/build_mechanisms.sh {os.path.dirname(lib)})")
    if os.path.basename(lib) != "libelmmech.so":
        if os.path.isfile(lib):
            return
        raise ConfigError(f"mechanism library {lib} not found")
    subprocess.run(["bash", os.path.join(HERE, "build_mechanisms.sh"), os.path.dirname(lib)],
                   check=True, stdout=sys.stderr)


# --- one simulation --------------------------------------------------------------------------

_SIM = None  # per-process nrn_run.Simulator


def init_worker(cfg: dict) -> None:
    global _SIM
    # Ctrl-C reaches the whole process group: the parent alone handles it and ends the pool (workers that
    # died of it themselves left the pool's bookkeeping half done, and its terminate() hung).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import nrn_run
    _SIM = nrn_run.Simulator(cfg["cell"], cfg["mechanisms"], cfg["synapses"], cfg["solver"],
                             record_dvts=cfg["save_dvts"], cell_params=cfg["cell_params"])


def sim_rng(file_seed: int, sim_index: int) -> np.random.RandomState:
    """Legacy RandomState (the published generator's algorithms) on MT19937 seeded from
    SeedSequence([file_seed, sim_index]): independent of scheduling."""
    return np.random.RandomState(np.random.MT19937(np.random.SeedSequence([file_seed, sim_index])))


def split_lengths(layout: dict):
    types = np.array(layout["allSegmentsType"])
    lengths = np.array(layout["allSegmentsLength"], dtype=np.float64)
    return lengths[types == "basal"], lengths[types == "apical"]


def draw_inputs(rng, cfg: dict, layout: dict):
    """Input spikes as (segment, time) int64 array pairs, plus the drawn epoch/sigma."""
    bas, apic = split_lengths(layout)
    ex, inh, info = inputs.generate_inputs(rng, cfg["duration_ms"], bas, apic, cfg["_generator"])
    info["num_ex_input_spikes"] = int(ex.sum())
    info["num_inh_input_spikes"] = int(inh.sum())
    return inputs.spike_pairs(ex), inputs.spike_pairs(inh), info


def run_one(task) -> bytes:
    """task = (cfg, file_seed, sim_index, pre_drawn or None). Returns the pickled result, so
    that results take the same serialisation path with and without worker processes (the
    object sharing inside the written pickle, hence its bytes, must not depend on it)."""
    cfg, file_seed, sim_index, drawn = task
    t0 = time.time()
    c0 = time.process_time()
    if drawn is None:
        ex, inh, info = draw_inputs(sim_rng(file_seed, sim_index), cfg, _SIM.layout)
    else:
        ex, inh, info = drawn
    c1 = time.process_time()
    res = _SIM.run(ex, inh, cfg["duration_ms"], cfg["samples_per_ms_high_res"],
                   cfg["spike_threshold_mv"])
    res["_ex_pairs"], res["_inh_pairs"] = ex, inh
    for key in ("somaVoltageLowRes", "nexusVoltageLowRes"):  # float16 in the file: also its range
        bad = np.flatnonzero(~np.isfinite(res[key]))
        if bad.size:
            raise ConfigError(f"simulation {sim_index} of seed {file_seed}: {key} is not finite from "
                              f"t = {int(bad[0])} ms (the cell diverged or left float16's range): check "
                              f"config.cell_params, config.synapses and config.solver.dt")
    c2 = time.process_time()
    meta = dict(info)
    meta.update({
        "sim_index": sim_index,
        "seed_sequence": [file_seed, sim_index] if drawn is None else None,
        "num_output_spikes": int(len(res["_spike_times_f64"])),
        "num_solver_steps": res["_num_solver_steps"],
        "cpu_s_inputs": round(c1 - c0, 3),
        "cpu_s_neuron": round(c2 - c1, 3),
        "wall_s": round(time.time() - t0, 3),
        "pid": os.getpid(),
    })
    return pickle.dumps((res, meta), protocol=pickle.HIGHEST_PROTOCOL)


# --- files -----------------------------------------------------------------------------------

class FileAssembler:
    def __init__(self, cfg, out_dir, layout, cell_desc, fp, total_files):
        self.cfg, self.out_dir, self.layout = cfg, out_dir, layout
        self.cell_desc, self.fp, self.total_files = cell_desc, fp, total_files

    def write(self, file_idx: int, seed: int, results: list, started: float) -> str:
        cfg = self.cfg
        n = cfg["simulations_per_file"]
        dur_s = cfg["duration_ms"] // 1000
        sims = [neuronio_file.sim_dict(r, inputs.pairs_to_dict(*r["_ex_pairs"]),
                                       inputs.pairs_to_dict(*r["_inh_pairs"]), cfg["save_dvts"])
                for r, _ in results]
        spikes = [r["_spike_times_f64"] for r, _ in results]
        elapsed = (time.time() - started) / 60.0
        params = neuronio_file.build_params(
            seed=seed, num_sims=n, duration_s=dur_s, dvts=cfg["save_dvts"],
            samples_per_ms=cfg["samples_per_ms_high_res"], generator=cfg["_generator"],
            layout=self.layout, spike_times_f64=spikes,
            elapsed_minutes=0.0 if cfg["deterministic_timing"] else elapsed)
        total = params["totalNumOutputSpikes"]
        name = neuronio_file.file_name(total, n, dur_s, seed, cfg["save_dvts"])
        neuronio_file.remove_stale(self.out_dir, seed)
        # A sidecar marks the file as being written first: a pickle left by a kill before the final
        # sidecar is then known as ours (removed by the next run), and any other one as not ours.
        neuronio_file.write_sidecar(self.out_dir, name, {"complete": False, "output": {"file": name}})
        out = neuronio_file.write_file(self.out_dir, name, params, sims)
        info = {
            "complete": True,
            "output": out,
            "file_index": file_idx,
            "file_seed": seed,
            "fingerprint": self.fp,
            "config": public_config(cfg),
            "generator": vars(cfg["_generator"]),
            "cell": self.cell_desc,
            "rng": ("per simulation: numpy RandomState(MT19937(SeedSequence([file_seed, "
                    "sim_index])))" if cfg["rng"] == "per_simulation" else
                    "original: numpy.random.seed(file_seed), one legacy stream for the file, "
                    "simulations in order"),
            "simulations": [m for _, m in results],
            "num_output_spikes": total,
            "average_output_frequency_hz": params["averageOutputFrequency"],
            "elapsed_minutes": round(elapsed, 3),
            "versions": versions(),
        }
        neuronio_file.write_sidecar(self.out_dir, name, info)
        log(f"file {file_idx + 1}/{self.total_files} (seed {seed}) written: {name} "
            f"({total} output spikes, {params['averageOutputFrequency']:.2f} Hz, "
            f"{elapsed:.1f} min)")
        return name


def versions() -> dict:
    import scipy
    from neuron import h
    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "neuron": str(h.nrnversion(5)),
            "platform": platform.platform()}


def progress(file_idx, n_files, seed, meta, n_sims):
    log(f"file {file_idx + 1}/{n_files} (seed {seed}) sim {meta['sim_index'] + 1}/{n_sims}: "
        f"{meta['num_output_spikes']} spikes, {meta['num_ex_input_spikes']} ex / "
        f"{meta['num_inh_input_spikes']} inh inputs, {meta['cpu_s_neuron']:.1f} s NEURON + "
        f"{meta['cpu_s_inputs']:.1f} s inputs CPU (pid {meta['pid']})")


def original_stream_inputs(cfg, layout, seed):
    """rng == 'original': np.random.seed(seed) once per file, simulations drawn in order."""
    rng = np.random.RandomState(seed)
    return [draw_inputs(rng, cfg, layout) for _ in range(cfg["simulations_per_file"])]


# --- drivers ---------------------------------------------------------------------------------

def prepare(cfg: dict, out_dir: str, resume: bool):
    """Builds the cell once here for the layout; returns the (index, seed) files still to do."""
    import nrn_run
    try:
        nrn_run.load_mechanisms(cfg["mechanisms"])
    except RuntimeError as e:
        raise ConfigError(f"config.mechanisms = {cfg['mechanisms']!r}: {e}") from None
    try:  # a plug-in that cannot be found or built with cell_params: a config error naming both
        cell = nrn_run.make_cell(cfg["cell"], cfg["cell_params"])
    except (ImportError, AttributeError, TypeError, ValueError, OSError) as e:
        where = traceback.extract_tb(e.__traceback__)[-1]  # the line that raised it, for a plug-in's own bugs
        raise ConfigError(f"config.cell = {cfg['cell']!r} with config.cell_params = "
                          f"{json.dumps(cfg['cell_params'])}: {type(e).__name__}: {e} "
                          f"(raised at {where.filename}:{where.lineno})") from None
    layout = nrn_run.segment_layout(cell)
    cell_desc = cell.description() if hasattr(cell, "description") else {"spec": cfg["cell"]}
    cell_desc = json.loads(json.dumps(cell_desc, default=str))
    cell_desc["spec"] = cfg["cell"]
    cfg["_cell_description"] = cell_desc
    del cell
    fp = fingerprint(cfg, layout)
    todo = []
    for k, seed in enumerate(cfg["file_seeds"]):
        foreign = neuronio_file.foreign_files(out_dir, seed)
        if foreign:
            raise ConfigError(f"{foreign[0]} has this run's seed {seed} but no JSON sidecar: not written by "
                              f"this generator (or by a version that left no sidecar); it is never "
                              f"overwritten: move it away or use another --out")
        info = neuronio_file.find_complete(out_dir, seed)
        if info is not None:
            if not resume:
                raise ConfigError(f"{out_dir} already holds the file for seed {seed} "
                                  f"({info['output']['file']}); use --resume or another --out")
            if info.get("fingerprint") != fp:
                raise ConfigError(f"{out_dir}: the file for seed {seed} was made with another "
                                  f"configuration or cell; use another --out")
            log(f"file {k + 1}/{len(cfg['file_seeds'])} (seed {seed}) complete, skipped")
            continue
        todo.append((k, seed))
    return layout, cell_desc, fp, todo


def run_local(cfg, out_dir, workers, resume) -> int:
    layout, cell_desc, fp, todo = prepare(cfg, out_dir, resume)
    n = cfg["simulations_per_file"]
    asm = FileAssembler(cfg, out_dir, layout, cell_desc, fp, len(cfg["file_seeds"]))
    workers = max(1, min(workers, len(todo) * n))  # more processes than simulations would only wait
    log(f"{len(todo)} file(s) x {n} simulations x {cfg['duration_ms']} ms, "
        f"{len(layout['allSegmentsType'])} segments, {workers} worker(s)")

    def tasks():
        for k, seed in todo:
            drawn = original_stream_inputs(cfg, layout, seed) if cfg["rng"] == "original" else None
            for i in range(n):
                yield (cfg, seed, i, None if drawn is None else drawn[i])

    if not todo:
        return 0
    if workers <= 1:
        init_worker(cfg)
        results_iter = map(run_one, tasks())
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=init_worker, initargs=(cfg,))
        results_iter = pool.imap(run_one, tasks(), chunksize=1)
    try:
        for k, seed in todo:
            started = time.time()
            results = []
            for _ in range(n):
                res, meta = pickle.loads(next(results_iter))
                progress(k, len(cfg["file_seeds"]), seed, meta, n)
                results.append((res, meta))
            asm.write(k, seed, results, started)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return 0


def mpi_size_from_env() -> int:
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 1


def mpi_rank_from_env() -> int:
    for var in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def run_mpi(cfg, out_dir, resume) -> int:
    """One NEURON process per rank (NEURON's ParallelContext; no mpi4py needed). Simulation i of
    each file runs on rank i % nhost; rank 0 gathers and writes the file. Ends the process
    through h.quit (MPI_Finalize); an unexpected error on any rank aborts the whole job."""
    from neuron import h
    h.nrnmpi_init()
    pc = h.ParallelContext()
    rank, nhost = int(pc.id()), int(pc.nhost())
    status = 0
    try:
        plan = None
        if rank == 0:
            try:
                layout, cell_desc, fp, todo = prepare(cfg, out_dir, resume)
                asm = FileAssembler(cfg, out_dir, layout, cell_desc, fp, len(cfg["file_seeds"]))
                plan = {"todo": todo}
                log(f"MPI: {nhost} ranks, {len(todo)} file(s) x {cfg['simulations_per_file']} "
                    f"simulations x {cfg['duration_ms']} ms")
            except (ConfigError, FileNotFoundError) as e:
                plan = {"error": str(e)}
        plan = pc.py_broadcast(plan, 0)
        if "error" in plan:
            if rank == 0:
                log(f"error: {plan['error']}")
            status = 2
        elif plan["todo"]:
            init_worker(cfg)
            n = cfg["simulations_per_file"]
            for k, seed in plan["todo"]:
                started = time.time()
                drawn = (original_stream_inputs(cfg, _SIM.layout, seed)
                         if cfg["rng"] == "original" else None)
                mine = []
                for i in range(rank, n, nhost):
                    blob = run_one((cfg, seed, i, None if drawn is None else drawn[i]))
                    res, meta = pickle.loads(blob)
                    meta["mpi_rank"] = rank
                    progress(k, len(cfg["file_seeds"]), seed, meta, n)
                    mine.append((i, pickle.dumps((res, meta), protocol=pickle.HIGHEST_PROTOCOL)))
                gathered = pc.py_gather(mine, 0)
                if rank == 0:
                    by_index = dict(item for part in gathered for item in part)
                    asm.write(k, seed, [pickle.loads(by_index[i]) for i in range(n)], started)
                pc.barrier()
    except BaseException:  # noqa: BLE001 - any failure must take the other ranks down too
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # without MPI_Finalize: mpirun aborts the job instead of hanging
    pc.done()
    h.quit(status)
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="JSON config (keys: see DEFAULTS in this file / README.md)")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes (ignored under mpirun: one process per rank)")
    ap.add_argument("--resume", action="store_true", help="skip files already complete in --out")
    ap.add_argument("--cell", help="cell plug-in 'module.py:ClassName' (overrides the config)")
    ap.add_argument("--mechanisms", help="mechanism library .so (overrides the config)")
    ap.add_argument("--mpi", choices=("auto", "on", "off"), default="auto",
                    help="use MPI ranks (auto: when started by mpirun/srun)")
    args = ap.parse_args(argv)
    # SIGTERM -> SystemExit, so that worker pools are terminated in the finally blocks
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        cfg = load_config(args.config, {"cell": args.cell, "mechanisms": args.mechanisms})
        if args.workers < 1:
            raise ConfigError("--workers must be >= 1")
        for key in ("mechanisms",):
            cfg[key] = os.path.abspath(cfg[key])
        mod, cls = cfg["cell"].rsplit(":", 1)
        if mod.endswith(".py"):
            cfg["cell"] = os.path.abspath(mod) + ":" + cls
        use_mpi = args.mpi == "on" or (args.mpi == "auto" and mpi_size_from_env() > 1)
        os.makedirs(args.out, exist_ok=True)
        out_dir = os.path.abspath(args.out)
        lock = None
        if not os.environ.get("ELM_SIMULATE_LOCK_HELD") and (not use_mpi or mpi_rank_from_env() == 0):
            # One generator per folder, as `elmneuron simulate` (which holds this lock for us) ensures.
            lock = open(os.path.join(out_dir, ".lock"), "a+")
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ConfigError(f"{out_dir} is locked by another running job writing into it; wait for "
                                  f"it or use another --out") from None
        if not use_mpi or mpi_rank_from_env() == 0:
            ensure_mechanisms(cfg)  # other ranks load it only after rank 0's broadcast
        if use_mpi:
            return run_mpi(cfg, out_dir, args.resume)
        return run_local(cfg, out_dir, args.workers, args.resume)
    except (ConfigError, FileNotFoundError) as e:
        log(f"error: {e}")
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the pool is gone (finally above); written files are complete
        log("interrupted: the files written so far are complete; --resume continues with the rest")
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
