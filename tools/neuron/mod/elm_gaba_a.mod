TITLE ElmGabaA: GABA_A synapse, always-release (elmneuron NeuronIO generator)

COMMENT
Written for elmneuron (tools/neuron). Dual-exponential conductance normalised so that one
event of weight 1 peaks at gmax (uS); every event is released. Defaults are the NeuronIO
protocol values (tau_r 0.2 ms, tau_d 8 ms, e -80 mV, gmax 1 nS; datasets.md section 1.3).
  g = gmax * (b - a),  a' = -a / tau_r,  b' = -b / tau_d,  event: a += w f, b += w f
Fixed time step only: exact decay factors exp(-dt/tau) from INITIAL (see elm_ampa_nmda.mod).
ENDCOMMENT

NEURON {
    POINT_PROCESS ElmGabaA
    RANGE tau_r, tau_d, gmax, e, g, i
    NONSPECIFIC_CURRENT i
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
}

PARAMETER {
    tau_r = 0.2    (ms)
    tau_d = 8      (ms)
    gmax = 0.001   (uS)
    e = -80        (mV)
}

ASSIGNED {
    v (mV)
    dt (ms)
    i (nA)
    g (uS)
    f (1)
    k_r (1)
    k_d (1)
    a (1)
    b (1)
}

INITIAL {
    LOCAL tp
    a = 0
    b = 0
    tp = tau_r * tau_d / (tau_d - tau_r) * log(tau_d / tau_r)
    f = 1 / (exp(-tp / tau_d) - exp(-tp / tau_r))
    k_r = exp(-dt / tau_r)
    k_d = exp(-dt / tau_d)
}

BREAKPOINT {
    SOLVE advance
    g = gmax * (b - a)
    i = g * (v - e)
    CONDUCTANCE g
}

PROCEDURE advance() {
    a = a * k_r
    b = b * k_d
}

NET_RECEIVE (weight) {
    a = a + weight * f
    b = b + weight * f
}
