TITLE ElmCaHot: high-voltage-activated calcium current for the apical hot zone

COMMENT
Written for elmneuron (tools/neuron). A deliberately small model of the dendritic Ca2+
conductance that produces the apical Ca2+ spike of layer-5 pyramidal neurons (Larkum et al.
1999; Schiller et al. 1997). No calcium concentration is tracked: the current is carried by
a fixed reversal potential eca_fixed, and the spike ends by voltage-dependent inactivation
(instead of Ca2+-activated K+ current). Boltzmann gates (parameters chosen for this cell,
see tools/neuron/README.md):
  m_inf = 1 / (1 + exp(-(v - vhalf_m) / k_m)),   tau_m (ms, constant)
  h_inf = 1 / (1 + exp( (v - vhalf_h) / k_h)),   tau_h = tau_h_depol + (tau_h_rest - tau_h_depol) * h_inf
  i = gbar m^2 h (v - eca_fixed)
ENDCOMMENT

NEURON {
    SUFFIX elm_ca_hot
    NONSPECIFIC_CURRENT i
    RANGE gbar, eca_fixed, g
    GLOBAL vhalf_m, k_m, tau_m, vhalf_h, k_h, tau_h_depol, tau_h_rest
}

UNITS {
    (S) = (siemens)
    (mA) = (milliamp)
    (mV) = (millivolt)
}

PARAMETER {
    gbar = 0.001       (S/cm2)
    eca_fixed = 120    (mV)
    vhalf_m = -27      (mV)
    k_m = 5            (mV)
    tau_m = 1.5        (ms)
    vhalf_h = -48      (mV)
    k_h = 5            (mV)
    tau_h_depol = 40   (ms)
    tau_h_rest = 120   (ms)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    g (S/cm2)
    m_inf (1)
    h_inf (1)
    tau_h (ms)
}

STATE { m h }

INITIAL {
    rates(v)
    m = m_inf
    h = h_inf
}

BREAKPOINT {
    SOLVE gates METHOD cnexp
    g = gbar * m * m * h
    i = g * (v - eca_fixed)
}

DERIVATIVE gates {
    rates(v)
    m' = (m_inf - m) / tau_m
    h' = (h_inf - h) / tau_h
}

PROCEDURE rates(v (mV)) {
    TABLE m_inf, h_inf, tau_h DEPEND vhalf_m, k_m, vhalf_h, k_h, tau_h_depol, tau_h_rest FROM -150 TO 100 WITH 2500
    m_inf = 1 / (1 + exp(-(v - vhalf_m) / k_m))
    h_inf = 1 / (1 + exp((v - vhalf_h) / k_h))
    tau_h = tau_h_depol + (tau_h_rest - tau_h_depol) * h_inf
}
