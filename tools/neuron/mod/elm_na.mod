TITLE ElmNa: fast sodium current (Traub & Miles kinetics, Pospischil et al. 2008 form)

COMMENT
Written for elmneuron (tools/neuron). Transient Na+ current of the minimal cortical neuron
models of Pospischil et al. 2008 (Biol Cybern 99:427), which use the Traub & Miles (1991)
rate functions shifted by vtraub. Rates in 1/ms, u = v - vtraub:
  alpha_m = 0.32 (13 - u) / (exp((13 - u) / 4) - 1)
  beta_m  = 0.28 (u - 40) / (exp((u - 40) / 5) - 1)
  alpha_h = 0.128 exp((17 - u) / 18)
  beta_h  = 4 / (1 + exp((40 - u) / 5))
  i = gbar m^3 h (v - ena)
Fixed time step only: each gate advances by the exact exponential step for the current v,
x += (1 - exp(-dt (alpha + beta))) (x_inf - x), tabulated at 0.1 mV.
ENDCOMMENT

NEURON {
    SUFFIX elm_na
    NONSPECIFIC_CURRENT i
    RANGE gbar, g
    GLOBAL ena, vtraub
}

UNITS {
    (S) = (siemens)
    (mA) = (milliamp)
    (mV) = (millivolt)
}

PARAMETER {
    gbar = 0.05     (S/cm2)
    ena = 50        (mV)
    vtraub = -55    (mV)
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
    g = gbar * m * m * m * h
    i = g * (v - ena)
    CONDUCTANCE g
}

PROCEDURE advance() {
    rates(v)
    m = m + m_step * (m_inf - m)
    h = h + h_step * (h_inf - h)
}

FUNCTION efun(x, y) {
    : x / (exp(x / y) - 1), continuous at x = 0
    if (fabs(x / y) < 1e-6) {
        efun = y * (1 - x / y / 2)
    } else {
        efun = x / (exp(x / y) - 1)
    }
}

PROCEDURE rates(v (mV)) {
    LOCAL u, am, bm, ah, bh
    TABLE m_inf, m_step, h_inf, h_step DEPEND dt, vtraub FROM -150 TO 100 WITH 2501
    u = v - vtraub
    am = 0.32 * efun(13 - u, 4)
    bm = 0.28 * efun(u - 40, 5)
    ah = 0.128 * exp((17 - u) / 18)
    bh = 4 / (1 + exp((40 - u) / 5))
    m_inf = am / (am + bm)
    m_step = 1 - exp(-dt * (am + bm))
    h_inf = ah / (ah + bh)
    h_step = 1 - exp(-dt * (ah + bh))
}
