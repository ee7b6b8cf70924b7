TITLE ElmCaHot: high-voltage-activated calcium current for the apical hot zone

COMMENT
Written for elmneuron (tools/neuron). A deliberately small model of the dendritic Ca2+
conductance that produces the apical Ca2+ spike of layer-5 pyramidal neurons (Schiller et al.
1997; Larkum et al. 1999). No calcium concentration is tracked: the current has a fixed
reversal potential eca_fixed, and the Ca2+ spike ends by voltage-dependent inactivation
(instead of Ca2+-activated K+ current). Boltzmann gates, parameters chosen for this cell
(tools/neuron/README.md):
  m_inf = 1 / (1 + exp(-(v - vhalf_m) / k_m)),  tau_m constant
  h_inf = 1 / (1 + exp( (v - vhalf_h) / k_h)),  tau_h = tau_h_depol + (tau_h_rest - tau_h_depol) h_inf
  i = gbar m^2 h (v - eca_fixed)
Fixed time step only (exact exponential step per dt, tabulated at 0.1 mV).
ENDCOMMENT

NEURON {
    SUFFIX elm_ca_hot
    NONSPECIFIC_CURRENT i
    RANGE gbar, g
    GLOBAL eca_fixed, vhalf_m, k_m, tau_m, vhalf_h, k_h, tau_h_depol, tau_h_rest
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
    dt (ms)
    i (mA/cm2)
    g (S/cm2)
    m_inf (1)
    m_step (1)
    h_inf (1)
    h_step (1)
    m (1)
    h (1)
}

INITIAL {
    rates(v)
    m = m_inf
    h = h_inf
}

BREAKPOINT {
    SOLVE advance
    g = gbar * m * m * h
    i = g * (v - eca_fixed)
    CONDUCTANCE g
}

PROCEDURE advance() {
    rates(v)
    m = m + m_step * (m_inf - m)
    h = h + h_step * (h_inf - h)
}

PROCEDURE rates(v (mV)) {
    LOCAL tau_h
    TABLE m_inf, m_step, h_inf, h_step DEPEND dt, vhalf_m, k_m, tau_m, vhalf_h, k_h, tau_h_depol, tau_h_rest FROM -150 TO 100 WITH 2501
    m_inf = 1 / (1 + exp(-(v - vhalf_m) / k_m))
    m_step = 1 - exp(-dt / tau_m)
    h_inf = 1 / (1 + exp((v - vhalf_h) / k_h))
    tau_h = tau_h_depol + (tau_h_rest - tau_h_depol) * h_inf
    h_step = 1 - exp(-dt / tau_h)
}
