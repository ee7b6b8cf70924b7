"""NeuronIO input generator (Beniaguev et al. 2021), numpy only.

Implements steps 1-12 of the published generator (`generate_input_spike_trains_for_simulation`
in SelfishGene/neuron_as_deep_net, NMDA configuration; described in
/work/shared/reference/datasets.md section 1.3) with the same order of random draws, so that
given the same numpy RandomState and the same segment lengths it draws the same inputs:

  1. adjusted length = segment length + min_seg_length_um, summed per tree (basal, apical)
  2. epoch length T = choice(T options) + int(2 J rand() - J)
  3. smoothing sigma = choice(sigma options) + int(2 J rand() - J)
  4. N = ceil(duration / T) rate epochs
  5. per tree: ex ~ U(ex range), inh ~ U(max(0, ex + diff_lo), ex + diff_hi)  (spikes/tree/100 ms)
  6. / (total adjusted tree length * 100)  -> per um per ms
  7. replicate over the tree's segments (basal rows, then apical rows)
  8. spatial noise U(0.5, 1.5), ex first then inh
  9. * adjusted segment length
 10. hold each epoch for T ms, crop to the duration
 11. Gaussian smoothing, window length 1 + 7 sigma, normalised, convolve(mode='same')
 12. p = exponential(scale=rate); spike = rand() < p  (ex, then inh)

Spike times are integer ms 0..duration-1, at most one spike per synapse per ms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import signal


@dataclass
class GeneratorParams:
    """Ranges of the published NMDA configuration (datasets.md section 1.3)."""
    num_bas_ex_spikes_per_100ms_range: list = field(default_factory=lambda: [0, 800])
    num_bas_ex_inh_spike_diff_per_100ms_range: list = field(default_factory=lambda: [-600, 200])
    num_apic_ex_spikes_per_100ms_range: list = field(default_factory=lambda: [0, 800])
    num_apic_ex_inh_spike_diff_per_100ms_range: list = field(default_factory=lambda: [-600, 200])
    min_seg_length_um: float = 10.0
    inst_rate_sampling_time_interval_options_ms: list = field(default_factory=lambda: [
        25, 30, 35, 40, 45, 55, 60, 65, 70, 75, 80, 85, 90, 100, 150, 200, 300, 450])
    temporal_inst_rate_smoothing_sigma_options_ms: list = field(default_factory=lambda: [
        25, 30, 35, 40, 50, 60, 80, 100, 150, 200, 300, 400, 500, 600])
    inst_rate_sampling_time_interval_jitter_range: int = 20
    temporal_inst_rate_smoothing_sigma_jitter_range: int = 20

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorParams":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"generator: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        p = cls(**d)
        p.validate()
        return p

    def validate(self) -> None:
        for name in ("num_bas_ex_spikes_per_100ms_range", "num_apic_ex_spikes_per_100ms_range",
                     "num_bas_ex_inh_spike_diff_per_100ms_range",
                     "num_apic_ex_inh_spike_diff_per_100ms_range"):
            r = getattr(self, name)
            if len(r) != 2 or not r[0] <= r[1]:
                raise ValueError(f"generator.{name}: expected [low, high] with low <= high, got {r}")
        for name in ("num_bas_ex_spikes_per_100ms_range", "num_apic_ex_spikes_per_100ms_range"):
            if getattr(self, name)[0] < 0:
                raise ValueError(f"generator.{name}: rates must be >= 0")
        if min(self.inst_rate_sampling_time_interval_options_ms) - \
                self.inst_rate_sampling_time_interval_jitter_range < 1:
            raise ValueError("generator: epoch length option minus jitter must be >= 1 ms")
        if min(self.temporal_inst_rate_smoothing_sigma_options_ms) - \
                self.temporal_inst_rate_smoothing_sigma_jitter_range < 1:
            raise ValueError("generator: smoothing sigma option minus jitter must be >= 1 ms")
        if self.min_seg_length_um < 0:
            raise ValueError("generator.min_seg_length_um must be >= 0")


def generate_inputs(rng: np.random.RandomState, duration_ms: int, basal_seg_length_um,
                    apical_seg_length_um, p: GeneratorParams):
    """Returns (ex_spikes_bin, inh_spikes_bin), bool arrays (n_segments, duration_ms), and a dict
    of the drawn epoch length and smoothing sigma. `rng` must be a legacy numpy RandomState (the
    published generator used np.random.* = RandomState/MT19937)."""
    bas = np.asarray(basal_seg_length_um, dtype=np.float64)
    apic = np.asarray(apical_seg_length_um, dtype=np.float64)
    n_bas, n_apic = len(bas), len(apic)

    # 1
    adj_bas = p.min_seg_length_um + bas
    adj_apic = p.min_seg_length_um + apic
    total_bas = adj_bas.sum()
    total_apic = adj_apic.sum()

    # 2, 3
    opts_t = p.inst_rate_sampling_time_interval_options_ms
    jt = p.inst_rate_sampling_time_interval_jitter_range
    epoch_ms = opts_t[rng.randint(len(opts_t))]
    epoch_ms += int(2 * jt * rng.rand() - jt)
    opts_s = p.temporal_inst_rate_smoothing_sigma_options_ms
    js = p.temporal_inst_rate_smoothing_sigma_jitter_range
    sigma = opts_s[rng.randint(len(opts_s))]
    sigma += int(2 * js * rng.rand() - js)

    # 4
    n_epochs = int(math.ceil(float(duration_ms) / epoch_ms))

    # 5
    def tree_rates(ex_range, diff_range):
        ex = rng.uniform(low=ex_range[0], high=ex_range[1], size=(1, n_epochs))
        inh_lo = np.maximum(0, ex + diff_range[0])
        inh_hi = ex + diff_range[1]
        inh = rng.uniform(low=inh_lo, high=inh_hi, size=(1, n_epochs))
        return ex, inh

    bas_ex, bas_inh = tree_rates(p.num_bas_ex_spikes_per_100ms_range,
                                 p.num_bas_ex_inh_spike_diff_per_100ms_range)
    apic_ex, apic_inh = tree_rates(p.num_apic_ex_spikes_per_100ms_range,
                                   p.num_apic_ex_inh_spike_diff_per_100ms_range)

    # 6, 7 (a cell without apical, or basal, segments leaves that tree's rows empty)
    with np.errstate(divide="ignore", invalid="ignore"):
        ex = np.vstack((np.kron(bas_ex / (total_bas * 100.0), np.ones((n_bas, 1))),
                        np.kron(apic_ex / (total_apic * 100.0), np.ones((n_apic, 1)))))
        inh = np.vstack((np.kron(bas_inh / (total_bas * 100.0), np.ones((n_bas, 1))),
                         np.kron(apic_inh / (total_apic * 100.0), np.ones((n_apic, 1)))))

    # 8
    ex = rng.uniform(low=0.5, high=1.5, size=ex.shape) * ex
    inh = rng.uniform(low=0.5, high=1.5, size=inh.shape) * inh

    # 9
    adj = np.hstack((adj_bas, adj_apic))[:, np.newaxis]
    ex = ex * adj
    inh = inh * adj

    # 10
    hold = np.ones((1, epoch_ms))
    ex = np.kron(ex, hold)[:, :duration_ms]
    inh = np.kron(inh, hold)[:, :duration_ms]

    # 11
    window = signal.windows.gaussian(int(1 + 7 * sigma), std=sigma)[np.newaxis, :]
    window /= window.sum()
    ex = signal.convolve(ex, window, mode="same")
    inh = signal.convolve(inh, window, mode="same")

    # 12
    p_ex = rng.exponential(scale=ex)
    ex_bin = rng.rand(p_ex.shape[0], p_ex.shape[1]) < p_ex
    p_inh = rng.exponential(scale=inh)
    inh_bin = rng.rand(p_inh.shape[0], p_inh.shape[1]) < p_inh

    info = {"inst_rate_sampling_time_interval_ms": int(epoch_ms),
            "temporal_inst_rate_smoothing_sigma_ms": int(sigma),
            "num_inst_rate_samples": n_epochs}
    return ex_bin, inh_bin, info


def spike_pairs(spikes_bin: np.ndarray):
    """(segment indices, times) as int64 arrays in np.nonzero order (segment, then time)."""
    seg_inds, times = np.nonzero(spikes_bin)
    return seg_inds.astype(np.int64), times.astype(np.int64)


def pairs_to_dict(seg_inds: np.ndarray, times: np.ndarray) -> dict:
    """{numpy.int64 segment -> list of numpy.int64 ms}, segments without spikes absent, in
    np.nonzero order, as the published files store them (built from np.nonzero of the
    binary matrices)."""
    seg_inds = np.asarray(seg_inds, dtype=np.int64)
    times = np.asarray(times, dtype=np.int64)
    out: dict = {}
    if len(seg_inds) == 0:
        return out
    bounds = np.flatnonzero(np.diff(seg_inds)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(seg_inds)]))
    keys = list(seg_inds[starts])  # numpy.int64 scalars
    for key, a, b in zip(keys, starts.tolist(), ends.tolist()):
        out[key] = list(times[a:b])  # list of numpy.int64 scalars
    return out


def spikes_to_dict(spikes_bin: np.ndarray) -> dict:
    return pairs_to_dict(*spike_pairs(spikes_bin))
