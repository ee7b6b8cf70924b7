TITLE ElmAmpaNmda: AMPA + NMDA synapse, always-release (elmneuron NeuronIO generator)

COMMENT
Written for elmneuron (tools/neuron). One excitatory input = one AMPA and one NMDA
conductance at the same site, both dual exponentials normalised so that a single event of
weight 1 gives a peak conductance of gmax (uS); both parts share gmax, as in the NeuronIO
protocol (Beniaguev et al. 2021; datasets.md section 1.3):

  g_ampa = gmax * (b_ampa - a_ampa)
  g_nmda = gmax * (b_nmda - a_nmda) * mggate(v)
  mggate = 1 / (1 + exp(-0.08 v) * mg / 3.57)          (Jahr & Stevens 1990 form)
  a' = -a / tau_r,  b' = -b / tau_d;   each event: a += w f, b += w f
  f = 1 / (exp(-tp/tau_d) - exp(-tp/tau_r)),  tp = tau_r tau_d / (tau_d - tau_r) ln(tau_d / tau_r)
  i = (g_ampa + g_nmda) (v - e)

Every event is released (no stochastic release, no short-term plasticity): the published
data were generated with release probability 1 (datasets.md 1.3).

Speed (fixed time step only): the states decay by exact factors exp(-dt/tau) computed once in
INITIAL (the same update METHOD cnexp would make, without an exp per step), mggate comes from a
table (0.05 mV steps, linear interpolation), and the CONDUCTANCE hint gives NEURON the chord
conductance instead of a second current evaluation. Because the states are advanced by a
PROCEDURE, this mechanism does not run under CVode.
ENDCOMMENT

NEURON {
    POINT_PROCESS ElmAmpaNmda
    RANGE tau_r_ampa, tau_d_ampa, tau_r_nmda, tau_d_nmda
    RANGE gmax, e, mg
    RANGE g_ampa, g_nmda, g, i
    NONSPECIFIC_CURRENT i
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
    dt (ms)
    i (nA)
    g (uS)
    g_ampa (uS)
    g_nmda (uS)
    f_ampa (1)
    f_nmda (1)
    k_ra (1)
    k_da (1)
    k_rn (1)
    k_dn (1)
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
    k_ra = exp(-dt / tau_r_ampa)
    k_da = exp(-dt / tau_d_ampa)
    k_rn = exp(-dt / tau_r_nmda)
    k_dn = exp(-dt / tau_d_nmda)
}

BREAKPOINT {
    SOLVE advance
    g_ampa = gmax * (b_ampa - a_ampa)
    g_nmda = gmax * (b_nmda - a_nmda) * mggate(v)
    g = g_ampa + g_nmda
    i = g * (v - e)
    CONDUCTANCE g
}

PROCEDURE advance() {
    a_ampa = a_ampa * k_ra
    b_ampa = b_ampa * k_da
    a_nmda = a_nmda * k_rn
    b_nmda = b_nmda * k_dn
}

FUNCTION mggate(v (mV)) (1) {
    TABLE DEPEND mg FROM -150 TO 100 WITH 5001
    mggate = 1 / (1 + exp(-0.08 (/mV) * v) * (mg / 3.57 (mM)))
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
