#!/usr/bin/python3
"""Summary statistics of NeuronIO pickles (published or generated), for checking a cell.

  python3 tools/neuron/summarize.py FILE.p [FILE.p ...]

Prints per file: simulations, output rate, share of simulations that fire, soma voltage range
and clipped mean (values above -55 mV clipped to -55, as for spike-free soma targets), input
rates per segment (Hz) and the share of 1-ms bins holding an input spike.
"""
from __future__ import annotations

import json
import pickle
import sys

import numpy as np


def load(path: str) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def summarize(d: dict) -> dict:
    params = d["Params"]
    sims = d["Results"]["listOfSingleSimulationDicts"]
    n_seg = len(params["allSegmentsType"])
    dur_ms = len(sims[0]["recordingTimeLowRes"])
    n_spikes = np.array([len(s["outputSpikeTimes"]) for s in sims])
    soma = np.stack([s["somaVoltageHighRes"].astype(np.float64) for s in sims])
    ex = np.array([sum(len(v) for v in s["exInputSpikeTimes"].values()) for s in sims])
    inh = np.array([sum(len(v) for v in s["inhInputSpikeTimes"].values()) for s in sims])
    seconds = dur_ms / 1000.0
    return {
        "simulations": len(sims),
        "segments": n_seg,
        "duration_ms": dur_ms,
        "output_rate_hz": float(n_spikes.sum() / (len(sims) * seconds)),
        "output_spikes_per_sim": n_spikes.tolist(),
        "share_of_sims_firing": float((n_spikes > 0).mean()),
        "soma_min_mv": float(soma.min()),
        "soma_max_mv": float(soma.max()),
        "soma_median_mv": float(np.median(soma)),
        "soma_clipped_mean_mv": float(np.minimum(soma, -55.0).mean()),
        "soma_clipped_std_mv": float(np.minimum(soma, -55.0).std()),
        "ex_rate_per_segment_hz": float(ex.mean() / (n_seg * seconds)),
        "inh_rate_per_segment_hz": float(inh.mean() / (n_seg * seconds)),
        "ex_share_of_bins_with_spike": float(ex.mean() / (n_seg * dur_ms)),
    }


def main(argv) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for path in argv:
        s = summarize(load(path))
        spikes = s.pop("output_spikes_per_sim")
        print(path)
        print(json.dumps(s, indent=1))
        print(f" output spikes per simulation: {spikes}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
