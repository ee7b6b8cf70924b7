TITLE ElmAmpaNmda: AMPA + NMDA synapse, always-release (elmneuron NeuronIO generator)

COMMENT
Written for elmneuron (tools/neuron). One excitatory input = one AMPA and one NMDA
conductance at the same site, both dual exponentials normalised so that a single event of
weight 1 gives a peak conductance of gmax (uS); both parts share gmax, as in the NeuronIO
protocol (Beniaguev et al. 2021, datasets.md section 1.3).

  g_ampa = gmax * (b_ampa - a_ampa)
  g_nmda = gmax * (b_nmda - a_nmda) * mggate
  mggate = 1 / (1 + exp(-0.08 v) * mg / 3.57)          (Jahr & Stevens 1990 form)
  a' = -a / tau_r,  b' = -b / tau_d;   each event: a += w f, b += w f
  f = 1 / (exp(-tp/tau_d) - exp(-tp/tau_r)),  tp = tau_r tau_d / (tau_d - tau_r) ln(tau_d / tau_r)

Every event is released (no stochastic release, no short-term plasticity): the published
data were generated with release probability 1 (datasets.md 1.3).
ENDCOMMENT

NEURON {
    POINT_PROCESS ElmAmpaNmda
    RANGE tau_r_ampa, tau_d_ampa, tau_r_nmda, tau_d_nmda
    RANGE gmax, e, mg, mggate
    RANGE g_ampa, g_nmda, i_ampa, i_nmda
    NONSPECIFIC_CURRENT i_ampa, i_nmda
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
    (mM) = (milli/liter)
}

PARAMETER {
    tau_r_ampa = 0.3  (ms)
    tau_d_ampa = 3    (ms)
    tau_r_nmda = 2    (ms)
    tau_d_nmda = 70   (ms)
    gmax = 0.0004     (uS)
    e = 0             (mV)
    mg = 1            (mM)
}

ASSIGNED {
    v (mV)
    i_ampa (nA)
    i_nmda (nA)
    g_ampa (uS)
    g_nmda (uS)
    mggate (1)
    f_ampa (1)
    f_nmda (1)
}

STATE {
    a_ampa (1)
    b_ampa (1)
    a_nmda (1)
    b_nmda (1)
}

INITIAL {
    a_ampa = 0
    b_ampa = 0
    a_nmda = 0
    b_nmda = 0
    f_ampa = peak_factor(tau_r_ampa, tau_d_ampa)
    f_nmda = peak_factor(tau_r_nmda, tau_d_nmda)
}

BREAKPOINT {
    SOLVE kinetics METHOD cnexp
    mggate = 1 / (1 + exp(-0.08 (/mV) * v) * (mg / 3.57 (mM)))
    g_ampa = gmax * (b_ampa - a_ampa)
    g_nmda = gmax * (b_nmda - a_nmda) * mggate
    i_ampa = g_ampa * (v - e)
    i_nmda = g_nmda * (v - e)
}

DERIVATIVE kinetics {
    a_ampa' = -a_ampa / tau_r_ampa
    b_ampa' = -b_ampa / tau_d_ampa
    a_nmda' = -a_nmda / tau_r_nmda
    b_nmda' = -b_nmda / tau_d_nmda
}

FUNCTION peak_factor(tr (ms), td (ms)) (1) {
    LOCAL tp
    tp = tr * td / (td - tr) * log(td / tr)
    peak_factor = 1 / (exp(-tp / td) - exp(-tp / tr))
}

NET_RECEIVE (weight) {
    a_ampa = a_ampa + weight * f_ampa
    b_ampa = b_ampa + weight * f_ampa
    a_nmda = a_nmda + weight * f_nmda
    b_nmda = b_nmda + weight * f_nmda
}
