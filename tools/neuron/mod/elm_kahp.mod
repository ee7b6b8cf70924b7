TITLE ElmKahp: spike-triggered afterhyperpolarisation K+ current (voltage-gated stand-in for SK)

COMMENT
Written for elmneuron (tools/neuron). Layer-5 pyramidal neurons fire single spikes at low
rates near threshold because each spike recruits a medium afterhyperpolarisation (mAHP),
mostly Ca2+-activated SK current (Hay et al. 2011 model it with Ca dynamics and SK_E2). Without
calcium dynamics, this gate opens only during the action potential (half-activation vhalf,
above the spike threshold) and closes slowly at rest, so each spike leaves an AHP of about
tau_rest that sums over spikes into adaptation:
  n_inf = 1 / (1 + exp(-(v - vhalf) / k))
  tau_n = tau_spike + (tau_rest - tau_spike) (1 - n_inf)
  i = gbar n (v - ek)
Fixed time step only (exact exponential step per dt, tabulated at 0.1 mV).
ENDCOMMENT

NEURON {
    SUFFIX elm_kahp
    NONSPECIFIC_CURRENT i
    RANGE gbar, g
    GLOBAL ek, vhalf, k, tau_spike, tau_rest
}

UNITS {
    (S) = (siemens)
    (mA) = (milliamp)
    (mV) = (millivolt)
}

PARAMETER {
    gbar = 0.005     (S/cm2)
    ek = -90         (mV)
    vhalf = -10      (mV)
    k = 5            (mV)
    tau_spike = 2    (ms)
    tau_rest = 40    (ms)
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
    g = gbar * n
    i = g * (v - ek)
    CONDUCTANCE g
}

PROCEDURE advance() {
    rates(v)
    n = n + n_step * (n_inf - n)
}

PROCEDURE rates(v (mV)) {
    LOCAL tau
    TABLE n_inf, n_step DEPEND dt, vhalf, k, tau_spike, tau_rest FROM -150 TO 100 WITH 2501
    n_inf = 1 / (1 + exp(-(v - vhalf) / k))
    tau = tau_spike + (tau_rest - tau_spike) * (1 - n_inf)
    n_step = 1 - exp(-dt / tau)
}
