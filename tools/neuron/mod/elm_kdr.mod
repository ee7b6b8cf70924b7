TITLE ElmKdr: delayed-rectifier potassium current (Traub & Miles kinetics, Pospischil et al. 2008 form)

COMMENT
Written for elmneuron (tools/neuron). Delayed-rectifier K+ current of the minimal cortical
neuron models of Pospischil et al. 2008 (Biol Cybern 99:427), Traub & Miles (1991) rates
shifted by vtraub. Rates in 1/ms, u = v - vtraub:
  alpha_n = 0.032 (15 - u) / (exp((15 - u) / 5) - 1)
  beta_n  = 0.5 exp((10 - u) / 40)
  i = gbar n^4 (v - ek)
Fixed time step only (exact exponential step per dt, tabulated at 0.1 mV).
ENDCOMMENT

NEURON {
    SUFFIX elm_kdr
    NONSPECIFIC_CURRENT i
    RANGE gbar, g
    GLOBAL ek, vtraub
}

UNITS {
    (S) = (siemens)
    (mA) = (milliamp)
    (mV) = (millivolt)
}

PARAMETER {
    gbar = 0.005    (S/cm2)
    ek = -90        (mV)
    vtraub = -55    (mV)
}

ASSIGNED {
    v (mV)
    dt (ms)
    i (mA/cm2)
    g (S/cm2)
    n_inf (1)
    n_step (1)
    n (1)
}

INITIAL {
    rates(v)
    n = n_inf
}

BREAKPOINT {
    SOLVE advance
    g = gbar * n * n * n * n
    i = g * (v - ek)
    CONDUCTANCE g
}

PROCEDURE advance() {
    rates(v)
    n = n + n_step * (n_inf - n)
}

FUNCTION efun(x, y) {
    if (fabs(x / y) < 1e-6) {
        efun = y * (1 - x / y / 2)
    } else {
        efun = x / (exp(x / y) - 1)
    }
}

PROCEDURE rates(v (mV)) {
    LOCAL u, an, bn
    TABLE n_inf, n_step DEPEND dt, vtraub FROM -150 TO 100 WITH 2501
    u = v - vtraub
    an = 0.032 * efun(15 - u, 5)
    bn = 0.5 * exp((10 - u) / 40)
    n_inf = an / (an + bn)
    n_step = 1 - exp(-dt * (an + bn))
}
