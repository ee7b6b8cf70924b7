"""Reduced layer-5 pyramidal cell for the NeuronIO protocol (elmneuron, tools/neuron).

Project-written morphology and biophysics; see tools/neuron/README.md for the sources of every
number. 639 synaptic segments in total: 262 basal + 377 apical, the split of the Hay et al.
(2011) cell used by the published NeuronIO data, and the apical sections are ordered so that the
segment-type index ranges hard-coded by the ELM code hold:
    basal 0..261, trunk + proximal obliques 262..365, tuft 366..558, distal obliques 559..638.

Plug-in interface (any cell given with --cell module.py:ClassName must provide):
    segments()        -> list of nrn.Segment, synapse sites, in input order
    soma_segment()    -> nrn.Segment recorded as the soma (output spikes)
  optional:
    nexus_segment()   -> nrn.Segment recorded as "nexus" (default: soma_segment())
    segment_types()   -> list of 'basal' / 'apical' per segment (default: all 'basal')
    segment_lengths() -> list of um per segment (default: sec.L / sec.nseg)
    v_init            -> initial membrane potential in mV (default -76)
    description()     -> JSON-serialisable dict stored in the sidecar
The constructor must work without arguments (keyword arguments come from the config key
"cell_params" when it is not empty) and must create exactly one cell.
"""
from __future__ import annotations

import math

from neuron import h

# One row per section: name, parent name, position on parent, L (um), diam at 0 and 1 (um),
# nseg, kind. Kinds: 'basal', 'trunk', 'oblique', 'tuft' (all but 'basal' are apical).
# Sections appear in input order inside each tree: basal rows, then apical rows.
_BASAL_TREE = [  # one basal tree: stem, 2 children, 4 grandchildren (43 segments)
    ("stem", None, 0.0, 20.0, 1.8, 1.4, 1),
    ("a", "stem", 1.0, 80.0, 1.1, 0.9, 3),
    ("b", "stem", 1.0, 80.0, 1.1, 0.9, 3),
    ("aa", "a", 1.0, 180.0, 0.8, 0.5, 9),
    ("ab", "a", 1.0, 180.0, 0.8, 0.5, 9),
    ("ba", "b", 1.0, 180.0, 0.8, 0.5, 9),
    ("bb", "b", 1.0, 180.0, 0.8, 0.5, 9),
]


def _basal_rows():
    rows = []
    for k in range(6):
        for name, parent, x, length, d0, d1, nseg in _BASAL_TREE:
            if name == "stem" and k < 2:  # two trees with a longer stem: 6 * 43 + 2 * 2 = 262
                length, nseg = 40.0, 3
            rows.append((f"basal{k}_{name}", f"basal{k}_{parent}" if parent else "soma",
                         x if parent else 0.5, length, d0, d1, nseg, "basal"))
    return rows


def _oblique(prefix, parent, x, child_nseg=(7, 7), child_len=(140.0, 140.0)):
    # stem + 2 children: 5 + child_nseg segments
    return [
        (f"{prefix}", parent, x, 100.0, 1.2, 1.0, 5, "oblique"),
        (f"{prefix}_a", prefix, 1.0, child_len[0], 0.8, 0.5, child_nseg[0], "oblique"),
        (f"{prefix}_b", prefix, 1.0, child_len[1], 0.8, 0.5, child_nseg[1], "oblique"),
    ]


def _tuft(prefix, parent, child_nseg=(7, 7), grandchildren=(True, True)):
    rows = [(f"{prefix}", parent, 1.0, 60.0, 1.6, 1.4, 3, "tuft")]
    for ci, c in enumerate("ab"):
        rows.append((f"{prefix}_{c}", prefix, 1.0, 20.0 * child_nseg[ci] + 10.0, 1.1, 0.8,
                     child_nseg[ci], "tuft"))
        if grandchildren[ci]:
            for g in "ab":
                rows.append((f"{prefix}_{c}{g}", f"{prefix}_{c}", 1.0, 190.0, 0.7, 0.4, 9, "tuft"))
    return rows


def _apical_rows():
    t = "trunk"
    rows = []
    # trunk + proximal obliques: 104 segments (ELM indices 262..365)
    rows.append((f"{t}0", "soma", 1.0, 120.0, 3.6, 3.1, 5, "trunk"))
    rows += _oblique("obl0", f"{t}0", 0.6)
    rows.append((f"{t}1", f"{t}0", 1.0, 120.0, 3.1, 2.7, 5, "trunk"))
    rows += _oblique("obl1", f"{t}1", 0.5)
    rows.append((f"{t}2", f"{t}1", 1.0, 120.0, 2.7, 2.4, 5, "trunk"))
    rows += _oblique("obl2", f"{t}2", 0.5)
    rows.append((f"{t}3", f"{t}2", 1.0, 120.0, 2.4, 2.1, 5, "trunk"))
    rows += _oblique("obl3", f"{t}3", 0.5, child_nseg=(9, 8), child_len=(180.0, 160.0))
    rows.append((f"{t}4", f"{t}3", 1.0, 120.0, 2.1, 1.9, 5, "trunk"))
    # tuft: 193 segments (ELM indices 366..558), all from the nexus (end of trunk4)
    rows += _tuft("tuft0", f"{t}4")
    rows += _tuft("tuft1", f"{t}4")
    rows += _tuft("tuft2", f"{t}4")
    rows += _tuft("tuft3", f"{t}4", child_nseg=(7, 6), grandchildren=(True, False))
    # distal obliques: 80 segments (ELM indices 559..638)
    rows += _oblique("obl4", f"{t}1", 0.2)
    rows += _oblique("obl5", f"{t}2", 0.8)
    rows += _oblique("obl6", f"{t}3", 0.8)
    rows += _oblique("obl7", f"{t}4", 0.4, child_nseg=(9, 9), child_len=(180.0, 180.0))
    return rows


class L5PCReduced:
    """Reduced L5 pyramidal cell: soma + axon initial segment (Na, Kdr, Km, mAHP), 6 basal trees,
    apical trunk with obliques, 4-branch tuft; Ih gradient along the apical tree, Na/Kdr on the
    trunk for back-propagating APs, a Ca2+ hot zone around the nexus."""

    v_init = -76.0

    # Biophysics (units: S/cm2, mV, ohm cm, uF/cm2, um). See README.md.
    params = {
        "Ra": 100.0,
        "cm_soma": 1.0, "cm_dend": 2.0,
        "g_pas": 6.0e-5, "e_pas": -80.0,
        "vtraub": -64.0, "ena": 50.0, "ek": -90.0,
        "gna_soma": 0.1, "gkdr_soma": 0.01, "gkm_soma": 5.0e-4, "gkahp_soma": 0.01,
        "kahp_tau_rest": 20.0,
        "gna_axon": 0.3, "gkdr_axon": 0.05,
        "gna_trunk": 0.02, "gkdr_trunk": 0.005, "gna_trunk_length_um": 600.0,
        "gih_soma": 1.0e-4, "gih_basal": 1.0e-4, "gih_apical_0": 1.0e-4,
        "gih_length_um": 330.0, "gih_apical_max": 2.0e-3,
        "gca_hot": 1.2e-3, "hot_zone_um": [480.0, 800.0],
    }

    def __init__(self, **overrides):
        unknown = set(overrides) - set(self.params)
        if unknown:
            raise ValueError(f"L5PCReduced: unknown parameters {sorted(unknown)}")
        self.params = dict(self.params, **overrides)
        self.soma = h.Section(name="soma")
        self.soma.L = 25.0
        self.soma.diam = 25.0
        self.soma.nseg = 1
        self.axon = h.Section(name="axon")
        self.axon.L = 60.0
        self.axon.diam = 1.0
        self.axon.nseg = 3
        self.axon.connect(self.soma(0.0))
        self.by_name = {"soma": self.soma}
        rows = _basal_rows() + _apical_rows()
        self.kind = {r[0]: r[7] for r in rows}
        self.basal = self._build(_basal_rows())
        self.apical = self._build(_apical_rows())
        self._biophysics()
        n = len(self.segments())
        if n != 639:
            raise AssertionError(f"L5PCReduced: expected 639 segments, built {n}")

    def _build(self, rows):
        secs = []
        for name, parent, x, length, d0, d1, nseg, _kind in rows:
            sec = h.Section(name=name)
            sec.L = length
            sec.nseg = nseg
            for seg in sec:
                seg.diam = d0 + (d1 - d0) * seg.x
            sec.connect(self.by_name[parent](x), 0.0)
            self.by_name[name] = sec
            secs.append(sec)
        return secs

    def _biophysics(self):
        p = self.params
        h.vtraub_elm_na = p["vtraub"]
        h.vtraub_elm_kdr = p["vtraub"]
        h.ena_elm_na = p["ena"]
        h.ek_elm_kdr = p["ek"]
        h.ek_elm_km = p["ek"]
        h.ek_elm_kahp = p["ek"]
        h.tau_rest_elm_kahp = p["kahp_tau_rest"]
        somatic = [self.soma, self.axon]
        for sec in somatic + self.basal + self.apical:
            sec.Ra = p["Ra"]
            sec.cm = p["cm_soma"] if sec in somatic else p["cm_dend"]
            sec.insert("pas")
            for seg in sec:
                seg.pas.g = p["g_pas"]
                seg.pas.e = p["e_pas"]
        self._insert(self.soma, elm_na=p["gna_soma"], elm_kdr=p["gkdr_soma"], elm_km=p["gkm_soma"],
                     elm_kahp=p["gkahp_soma"], elm_ih=p["gih_soma"])
        self._insert(self.axon, elm_na=p["gna_axon"], elm_kdr=p["gkdr_axon"])
        for sec in self.basal:
            self._insert(sec, elm_ih=p["gih_basal"])
        lo, hi = p["hot_zone_um"]
        for sec in self.apical:
            kind = self.kind[sec.name()]
            dists = [h.distance(self.soma(0.5), seg) for seg in sec]
            sec.insert("elm_ih")
            for seg, d in zip(sec, dists):
                seg.elm_ih.gbar = min(p["gih_apical_max"],
                                      p["gih_apical_0"] * math.exp(d / p["gih_length_um"]))
            if kind == "trunk":  # Na/K decreasing linearly to 0 at gna_trunk_length_um
                sec.insert("elm_na")
                sec.insert("elm_kdr")
                for seg, d in zip(sec, dists):
                    f = max(0.0, 1.0 - d / p["gna_trunk_length_um"])
                    seg.elm_na.gbar = p["gna_trunk"] * f
                    seg.elm_kdr.gbar = p["gkdr_trunk"] * f
            if kind in ("trunk", "tuft") and any(lo <= d <= hi for d in dists):
                sec.insert("elm_ca_hot")
                for seg, d in zip(sec, dists):
                    seg.elm_ca_hot.gbar = p["gca_hot"] if lo <= d <= hi else 0.0

    @staticmethod
    def _insert(sec, **gbars):
        for mech, gbar in gbars.items():
            sec.insert(mech)
            for seg in sec:
                getattr(seg, mech).gbar = gbar

    # --- plug-in interface -------------------------------------------------------------
    def segments(self):
        return [seg for sec in self.basal + self.apical for seg in sec]

    def soma_segment(self):
        return self.soma(0.5)

    def nexus_segment(self):
        return self.by_name["trunk4"](0.9)

    def segment_types(self):
        return ["basal" for sec in self.basal for _ in sec] + \
               ["apical" for sec in self.apical for _ in sec]

    def description(self):
        return {"class": "L5PCReduced", "params": dict(self.params),
                "num_sections": {"basal": len(self.basal), "apical": len(self.apical)},
                "segment_kinds": [self.kind[seg.sec.name()] for seg in self.segments()]}
