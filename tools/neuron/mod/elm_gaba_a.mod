TITLE ElmGabaA: GABA_A synapse, always-release (elmneuron NeuronIO generator)

COMMENT
Written for elmneuron (tools/neuron). Dual-exponential conductance normalised so that one
event of weight 1 peaks at gmax (uS); every event is released. Defaults are the NeuronIO
protocol values (tau_r 0.2 ms, tau_d 8 ms, e -80 mV, gmax 1 nS; datasets.md section 1.3).
  g = gmax * (b - a),  a' = -a / tau_r,  b' = -b / tau_d,  event: a += w f, b += w f
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
    i (nA)
    g (uS)
    f (1)
}

STATE {
    a (1)
    b (1)
}

INITIAL {
    LOCAL tp
    a = 0
    b = 0
    tp = tau_r * tau_d / (tau_d - tau_r) * log(tau_d / tau_r)
    f = 1 / (exp(-tp / tau_d) - exp(-tp / tau_r))
}

BREAKPOINT {
    SOLVE kinetics METHOD cnexp
    g = gmax * (b - a)
    i = g * (v - e)
}

DERIVATIVE kinetics {
    a' = -a / tau_r
    b' = -b / tau_d
}

NET_RECEIVE (weight) {
    a = a + weight * f
    b = b + weight * f
}
