"""NeuronIO file layout (datasets.md section 1.4): Params dict, file names, atomic writes.

One file = {'Params': {...}, 'Results': {'listOfSingleSimulationDicts': [...]}} written with
pickle protocol 2. Python 3 writes str as BINUNICODE (the published files, from Python 2, used
BINSTRING); both load with pickle.load(f, encoding='latin1').
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import warnings

import numpy as np

SIM_KEYS = ("recordingTimeHighRes", "somaVoltageHighRes", "nexusVoltageHighRes",
            "recordingTimeLowRes", "somaVoltageLowRes", "nexusVoltageLowRes",
            "exInputSpikeTimes", "inhInputSpikeTimes", "outputSpikeTimes")
DVT_KEY = "dendriticVoltagesLowRes"


def file_name(num_output_spikes: int, num_sims: int, duration_s: int, seed: int,
              dvts: bool) -> str:
    """Kaggle naming (ELM globs '*sim__*', the original code '*_128_simulationRuns*_6_secDuration_*')."""
    return (f"sim__saved_InputSpikes_{'DVTs' if dvts else ''}__{num_output_spikes}_outSpikes__"
            f"{num_sims}_simulationRuns__{duration_s}_secDuration__randomSeed_{seed}.p")


def sidecar_pattern(out_dir: str, seed: int) -> str:
    return os.path.join(glob.escape(out_dir), f"sim__*__randomSeed_{seed}.json")


def build_params(*, seed: int, num_sims: int, duration_s: int, dvts: bool, samples_per_ms: int,
                 generator, layout: dict, spike_times_f64: list, elapsed_minutes: float) -> dict:
    """Params with exactly the published keys and value types (datasets.md 1.4; the published
    script's listOfISIs holds numpy float64 ISIs of the float64 spike times)."""
    num_spikes = [int(len(s)) for s in spike_times_f64]
    isis = []
    for s in spike_times_f64:
        isis += list(np.diff(np.asarray(s, dtype=np.float64)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        isicv = np.std(isis) / np.mean(isis) if isis else np.float64(np.nan)
    total = int(sum(num_spikes))
    total_seconds = int(duration_s * num_sims)
    g = generator
    return {
        "randomSeed": int(seed),
        "numSimulations": int(num_sims),
        "totalSimDurationInSec": int(duration_s),
        "collectAndSaveDVTs": bool(dvts),
        "numSamplesPerMS_HighRes": int(samples_per_ms),
        "excitatorySynapseType": "NMDA",
        "inhibitorySynapseType": "GABA_A",
        "useActiveDendrites": True,
        "Ih_vshift": 0,
        "inst_rate_sampling_time_interval_options_ms":
            list(g.inst_rate_sampling_time_interval_options_ms),
        "num_bas_ex_spikes_per_100ms_range": list(g.num_bas_ex_spikes_per_100ms_range),
        "num_bas_ex_inh_spike_diff_per_100ms_range":
            list(g.num_bas_ex_inh_spike_diff_per_100ms_range),
        "num_apic_ex_spikes_per_100ms_range": list(g.num_apic_ex_spikes_per_100ms_range),
        "num_apic_ex_inh_spike_diff_per_100ms_range":
            list(g.num_apic_ex_inh_spike_diff_per_100ms_range),
        "allSectionsType": list(layout["allSectionsType"]),
        "allSections_DistFromSoma": list(layout["allSections_DistFromSoma"]),
        "allSectionsLength": list(layout["allSectionsLength"]),
        "allSegmentsType": list(layout["allSegmentsType"]),
        "allSegmentsLength": list(layout["allSegmentsLength"]),
        "allSegments_DistFromSoma": list(layout["allSegments_DistFromSoma"]),
        "allSegments_SectionDistFromSoma": list(layout["allSegments_SectionDistFromSoma"]),
        "allSegments_SectionInd": list(layout["allSegments_SectionInd"]),
        "ISICV": np.float64(isicv),
        "listOfISIs": isis,
        "numOutputSpikesPerSim": num_spikes,
        "totalNumOutputSpikes": total,
        "totalNumSimulationSeconds": total_seconds,
        "averageOutputFrequency": total / float(total_seconds),
        "entireExperimentDurationInMinutes": float(elapsed_minutes),
    }


def sim_dict(result: dict, ex_dict: dict, inh_dict: dict, dvts: bool) -> dict:
    """The published per-simulation dict, keys in the published script's insertion order."""
    out = {}
    for k in SIM_KEYS:
        if k == "exInputSpikeTimes":
            out[k] = ex_dict
        elif k == "inhInputSpikeTimes":
            out[k] = inh_dict
        else:
            out[k] = result[k]
    if dvts:
        out[DVT_KEY] = result[DVT_KEY]
    return out


def atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _HashingWriter:
    """File wrapper that hashes and counts what pickle writes (no second copy in memory)."""

    def __init__(self, f):
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def write(self, b):
        self.sha.update(b)
        self.n += len(b)
        return self.f.write(b)


def write_file(out_dir: str, name: str, params: dict, sims: list) -> dict:
    """Pickles {'Params', 'Results'} (protocol 2) to a temp file, then renames it into place;
    returns name, size and sha256."""
    payload = {"Params": params, "Results": {"listOfSingleSimulationDicts": sims}}
    path = os.path.join(out_dir, name)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        w = _HashingWriter(f)
        pickle.Pickler(w, protocol=2).dump(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"file": name, "bytes": w.n, "sha256": w.sha.hexdigest()}


def write_sidecar(out_dir: str, pickle_name: str, info: dict) -> str:
    path = os.path.join(out_dir, pickle_name[:-2] + ".json")
    atomic_write_bytes(path, (json.dumps(info, indent=1, sort_keys=True) + "\n").encode())
    return path


def find_complete(out_dir: str, seed: int):
    """The sidecar of a complete file for `seed`, or None. Complete = the sidecar says so and
    the pickle it names exists with the recorded size. The caller compares fingerprints."""
    for path in sorted(glob.glob(sidecar_pattern(out_dir, seed))):
        try:
            with open(path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        out = info.get("output", {})
        p = os.path.join(out_dir, out.get("file", ""))
        if info.get("complete") and os.path.isfile(p) and os.path.getsize(p) == out.get("bytes"):
            return info
    return None


def remove_stale(out_dir: str, seed: int) -> None:
    """Leftovers of an interrupted write of this seed's file: temp files, and a pickle whose sidecar still
    says it was being written (with that sidecar). A pickle without a sidecar is not ours: never removed."""
    for p in glob.glob(os.path.join(glob.escape(out_dir), f"sim__*__randomSeed_{seed}.*")):
        if ".tmp-" in p:
            os.remove(p)
    for side in glob.glob(sidecar_pattern(out_dir, seed)):
        try:
            with open(side) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if info.get("complete") is False:
            p = os.path.join(out_dir, info.get("output", {}).get("file", ""))
            if os.path.isfile(p):
                os.remove(p)
            os.remove(side)


def foreign_files(out_dir: str, seed: int) -> list:
    """Pickles named with this seed that have no sidecar: someone else's (e.g. a downloaded data set)."""
    return sorted(p for p in glob.glob(os.path.join(glob.escape(out_dir), f"sim__*__randomSeed_{seed}.p"))
                  if not os.path.exists(p[:-2] + ".json"))
