"""One NEURON process: load the mechanisms and the cell once, then run NeuronIO simulations.

Per simulation (datasets.md section 1.3): one ElmAmpaNmda and one ElmGabaA synapse per
segment, each driven by a NetCon(None, syn) with delay 0 and weight 1 whose events are queued
with NetCon.event(t) after finitialize; soma and nexus voltage recorded at every solver step
and linearly interpolated onto the 1/8 ms (high-res) and 1 ms (low-res) grids; output spikes
= local maxima of the high-res soma voltage above -25 mV.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")

import numpy as np  # noqa: E402
from neuron import h  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

_loaded_libs: set = set()


def load_mechanisms(lib_path: str) -> None:
    lib_path = os.path.abspath(lib_path)
    if lib_path in _loaded_libs:
        return
    if not os.path.isfile(lib_path):
        raise FileNotFoundError(
            f"mechanism library {lib_path} not found; build it with "
            f"tools/neuron/build_mechanisms.sh {os.path.dirname(lib_path)}")
    if hasattr(h, "ElmAmpaNmda"):  # already registered from another path
        _loaded_libs.add(lib_path)
        return
    if not h.nrn_load_dll(lib_path):
        raise RuntimeError(f"NEURON could not load {lib_path}")
    _loaded_libs.add(lib_path)


def load_cell_class(spec: str):
    """'path/to/module.py:ClassName' or 'package.module:ClassName'."""
    if ":" not in spec:
        raise ValueError(f"cell: expected 'module.py:ClassName', got '{spec}'")
    mod_part, cls_name = spec.rsplit(":", 1)
    if mod_part.endswith(".py") or os.sep in mod_part:
        path = os.path.abspath(mod_part)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cell module {path} not found")
        name = "elm_user_cell_" + os.path.splitext(os.path.basename(path))[0]
        if name in sys.modules:
            module = sys.modules[name]
        else:
            spec_obj = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[name] = module
            spec_obj.loader.exec_module(module)
    else:
        module = importlib.import_module(mod_part)
    if not hasattr(module, cls_name):
        raise ValueError(f"cell: {mod_part} has no class {cls_name}")
    return getattr(module, cls_name)


def make_cell(cell_spec: str, cell_params: dict | None = None):
    cls = load_cell_class(cell_spec)
    return cls(**cell_params) if cell_params else cls()


def segment_layout(cell) -> dict:
    """Per-section and per-segment geometry in the published Params layout."""
    segs = list(cell.segments())
    soma = cell.soma_segment()
    types = list(cell.segment_types()) if hasattr(cell, "segment_types") else ["basal"] * len(segs)
    if len(types) != len(segs):
        raise ValueError(f"cell: segment_types() has {len(types)} entries, segments() {len(segs)}")
    if any(t not in ("basal", "apical") for t in types):
        raise ValueError("cell: segment_types() entries must be 'basal' or 'apical'")
    if "apical" in types and "basal" in types[types.index("apical"):]:
        raise ValueError("cell: all basal segments must come before all apical segments")
    lengths = (list(cell.segment_lengths()) if hasattr(cell, "segment_lengths")
               else [seg.sec.L / seg.sec.nseg for seg in segs])
    sections, sec_index = [], {}
    seg_sec_ind = []
    for seg, typ in zip(segs, types):
        key = seg.sec  # Section objects hash by identity
        if key not in sec_index:
            sec_index[key] = len(sections)
            sections.append((seg.sec, typ))
        seg_sec_ind.append(sec_index[key])
    # As the published script: distances from the 0 end of the soma section to a section's 0
    # end; a segment's distance = its section's distance + L * x.
    origin = soma.sec(0.0)
    sec_dist = [float(h.distance(origin, sec(0.0))) for sec, _ in sections]
    seg_dist = [sec_dist[i] + float(seg.sec.L) * seg.x for seg, i in zip(segs, seg_sec_ind)]
    return {
        "allSectionsType": [t for _, t in sections],
        "allSections_DistFromSoma": sec_dist,
        "allSectionsLength": [float(sec.L) for sec, _ in sections],
        "allSegmentsType": types,
        "allSegmentsLength": [float(x) for x in lengths],
        "allSegments_DistFromSoma": seg_dist,
        "allSegments_SectionDistFromSoma": [sec_dist[i] for i in seg_sec_ind],
        "allSegments_SectionInd": [int(i) for i in seg_sec_ind],
    }


class Simulator:
    """Builds the cell, its 2 x n_segments synapses and the recorders once; run() reuses them."""

    def __init__(self, cell_spec: str, mech_lib: str, synapses: dict, solver: dict,
                 record_dvts: bool = False, cell_params: dict | None = None):
        load_mechanisms(mech_lib)
        h.load_file("stdrun.hoc")
        self.cell = make_cell(cell_spec, cell_params)
        self.segments = list(self.cell.segments())
        self.layout = segment_layout(self.cell)
        self.v_init = float(getattr(self.cell, "v_init", -76.0))
        self.solver = dict(solver)
        ex_cfg, inh_cfg = synapses["excitatory"], synapses["inhibitory"]
        self.ex_syn, self.inh_syn, self.ex_nc, self.inh_nc = [], [], [], []
        for seg in self.segments:
            s = h.ElmAmpaNmda(seg)
            for k, v in ex_cfg.items():
                setattr(s, k, v)
            g = h.ElmGabaA(seg)
            for k, v in inh_cfg.items():
                setattr(g, k, v)
            self.ex_syn.append(s)
            self.inh_syn.append(g)
            for syn, lst in ((s, self.ex_nc), (g, self.inh_nc)):
                nc = h.NetCon(None, syn)
                nc.delay = 0
                nc.weight[0] = 1
                lst.append(nc)
        # Fixed time step (the mechanisms advance their states with precomputed exact
        # exponential factors and cannot run under CVode; see README.md "Solver").
        self.cvode = h.CVode()
        self.cvode.active(0)
        self.cvode.cache_efficient(1)
        h.dt = float(self.solver["dt"])
        h.steps_per_ms = 1.0 / h.dt
        h.secondorder = int(self.solver["secondorder"])
        self.t_vec = h.Vector()
        self.t_vec.record(h._ref_t)
        self.soma_vec = h.Vector()
        self.soma_vec.record(self.cell.soma_segment()._ref_v)
        nexus = self.cell.nexus_segment() if hasattr(self.cell, "nexus_segment") \
            else self.cell.soma_segment()
        self.nexus_vec = h.Vector()
        self.nexus_vec.record(nexus._ref_v)
        self.record_dvts = record_dvts
        self.dvt_vecs = []
        if record_dvts:  # sampled at every integer ms (the low-res grid), not at every step
            for seg in self.segments:
                v = h.Vector()
                v.record(seg._ref_v, 1.0)
                self.dvt_vecs.append(v)

    def run(self, ex_pairs, inh_pairs, duration_ms: int, samples_per_ms: int = 8,
            threshold_mv: float = -25.0) -> dict:
        """ex_pairs, inh_pairs: (segment index array, time array in ms) of the input spikes.
        Returns the recorded arrays (published dtypes) and the float64 spike times."""
        h.finitialize(self.v_init)
        for (segs, times), ncs in ((ex_pairs, self.ex_nc), (inh_pairs, self.inh_nc)):
            for s, t in zip(np.asarray(segs).tolist(), np.asarray(times, dtype=float).tolist()):
                ncs[s].event(t)
        h.continuerun(float(duration_ms))

        t = self.t_vec.as_numpy()
        t_hi = np.arange(0, duration_ms, 1.0 / samples_per_ms)
        t_lo = np.arange(0, duration_ms)
        soma = self.soma_vec.as_numpy()
        nexus = self.nexus_vec.as_numpy()
        soma_hi = np.interp(t_hi, t, soma)
        nexus_hi = np.interp(t_hi, t, nexus)
        soma_lo = np.interp(t_lo, t, soma)
        nexus_lo = np.interp(t_lo, t, nexus)
        spike_t = detect_spikes(t_hi, soma_hi, threshold_mv)
        out = {
            "recordingTimeHighRes": t_hi.astype(np.float32),
            "somaVoltageHighRes": soma_hi.astype(np.float16),
            "nexusVoltageHighRes": nexus_hi.astype(np.float16),
            "recordingTimeLowRes": t_lo.astype(np.float32),
            "somaVoltageLowRes": soma_lo.astype(np.float16),
            "nexusVoltageLowRes": nexus_lo.astype(np.float16),
            "outputSpikeTimes": spike_t.astype(np.float16),
        }
        if self.record_dvts:
            dvt = np.empty((len(self.dvt_vecs), duration_ms), dtype=np.float16)
            for i, v in enumerate(self.dvt_vecs):
                dvt[i] = v.as_numpy()[:duration_ms]
            out["dendriticVoltagesLowRes"] = dvt
        # float64 spike times, for the ISI statistics (the published script used these)
        out["_spike_times_f64"] = spike_t
        out["_num_solver_steps"] = int(len(t))
        return out


def detect_spikes(t_hi: np.ndarray, v_hi: np.ndarray, threshold_mv: float = -25.0) -> np.ndarray:
    """Local maxima of the interpolated soma voltage above threshold (published rule)."""
    dv = v_hi[1:] - v_hi[:-1]
    rising_before = np.hstack((0, dv)) > 0
    falling_after = np.hstack((dv, 0)) < 0
    mask = rising_before & falling_after & (v_hi > threshold_mv)
    return t_hi[np.nonzero(mask)]
