TITLE ElmKm: slow non-inactivating potassium current (M-type, Pospischil et al. 2008 form)

COMMENT
Written for elmneuron (tools/neuron). Slow K+ current responsible for spike-frequency
adaptation in the regular-spiking model of Pospischil et al. 2008 (Biol Cybern 99:427;
after Yamada et al. 1989):
  p_inf = 1 / (1 + exp(-(v + 35) / 10))
  tau_p = tau_max / (3.3 exp((v + 35) / 20) + exp(-(v + 35) / 20))      (ms)
  i = gbar p (v - ek)
Fixed time step only (exact exponential step per dt, tabulated at 0.1 mV).
ENDCOMMENT

NEURON {
    SUFFIX elm_km
    NONSPECIFIC_CURRENT i
    RANGE gbar, g
    GLOBAL ek, tau_max
}

UNITS {
    (S) = (siemens)
    (mA) = (milliamp)
    (mV) = (millivolt)
}

PARAMETER {
    gbar = 7e-5      (S/cm2)
    ek = -90         (mV)
    tau_max = 1000   (ms)
}

ASSIGNED {
    v (mV)
    dt (ms)
    i (mA/cm2)
    g (S/cm2)
    p_inf (1)
    p_step (1)
    p (1)
}

INITIAL {
    rates(v)
    p = p_inf
}

BREAKPOINT {
    SOLVE advance
    g = gbar * p
    i = g * (v - ek)
    CONDUCTANCE g
}

PROCEDURE advance() {
    rates(v)
    p = p + p_step * (p_inf - p)
}

PROCEDURE rates(v (mV)) {
    LOCAL tau
    TABLE p_inf, p_step DEPEND dt, tau_max FROM -150 TO 100 WITH 2501
    p_inf = 1 / (1 + exp(-(v + 35) / 10))
    tau = tau_max / (3.3 * exp((v + 35) / 20) + exp(-(v + 35) / 20))
    p_step = 1 - exp(-dt / tau)
}
