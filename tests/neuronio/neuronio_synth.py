"""Small NeuronIO-layout data sets for tests: the published pickle layout (protocol 2, 639 segments ->
1278 inputs) with a soma trace and output spikes that are a fixed function of the inputs (a leaky
excitation-minus-inhibition drive), so that a model can learn them."""
import pickle

import numpy as np

NUM_SEGMENTS = 639


def write_neuronio_file(path, num_sims, duration_ms, seed, fire=True):
    rng = np.random.RandomState(seed)
    kernel = np.exp(-np.arange(60) / 12.0)
    sims = []
    for k in range(num_sims):
        rate = rng.uniform(0.004, 0.02)
        ex = rng.rand(NUM_SEGMENTS, duration_ms) < rate
        inh = rng.rand(NUM_SEGMENTS, duration_ms) < rate * 0.8
        drive = np.convolve(ex.sum(0) - 0.8 * inh.sum(0), kernel)[:duration_ms]
        soma = (-72 + 0.4 * drive + 0.3 * rng.randn(duration_ms)).astype(np.float16)
        # Output spikes where the drive crosses a per-simulation threshold (at most one per 10 ms).
        # Every fourth simulation fires often enough to fall outside the protocol's 0-24 spike filter.
        threshold = np.quantile(drive, 0.96 if k % 4 == 3 else 0.995)
        out, last = [], -100
        for t in range(duration_ms):
            if fire and drive[t] > threshold and t - last >= 10:
                out.append(t + 0.625)
                last = t
        sims.append({
            "recordingTimeLowRes": np.arange(duration_ms, dtype=np.float32),
            "somaVoltageLowRes": soma,
            "nexusVoltageLowRes": soma.copy(),
            "exInputSpikeTimes": {np.int64(s): [np.int64(t) for t in np.nonzero(ex[s])[0]]
                                  for s in range(NUM_SEGMENTS) if ex[s].any()},
            "inhInputSpikeTimes": {np.int64(s): [np.int64(t) for t in np.nonzero(inh[s])[0]]
                                   for s in range(NUM_SEGMENTS) if inh[s].any()},
            "outputSpikeTimes": np.array(out, dtype=np.float16),
        })
    params = {"randomSeed": seed, "numSimulations": num_sims, "totalSimDurationInSec": duration_ms // 1000,
              "allSegmentsType": ["basal"] * 262 + ["apical"] * 377}
    with open(path, "wb") as f:
        pickle.dump({"Params": params, "Results": {"listOfSingleSimulationDicts": sims}}, f, protocol=2)
