TITLE ElmIh: hyperpolarisation-activated cation current (HCN), one gate

COMMENT
Written for elmneuron (tools/neuron). Rate functions of Kole, Hallermann & Stuart 2006
(J Neurosci 26:1677, L5 pyramidal apical dendrite; also used by Hay et al. 2011). Rates in 1/ms:
  alpha = 6.43e-3 (v + 154.9) / (exp((v + 154.9) / 11.9) - 1)
  beta  = 0.193 exp(v / 33.1)
  m' = (m_inf - m) / tau_m,  m_inf = alpha / (alpha + beta),  tau_m = 1 / (alpha + beta)
  i = gbar m (v - ehcn),  ehcn = -45 mV
Fixed time step only: m advances by the exact exponential step for the current v,
m += (1 - exp(-dt / tau_m)) (m_inf - m), with m_inf and the step factor tabulated (0.1 mV).
ENDCOMMENT

NEURON {
    SUFFIX elm_ih
    NONSPECIFIC_CURRENT i
    RANGE gbar, ehcn, g
}

UNITS {
    (S) = (siemens)
    (mA) = (milliamp)
    (mV) = (millivolt)
}

PARAMETER {
    gbar = 0.0001   (S/cm2)
    ehcn = -45      (mV)
}

ASSIGNED {
    v (mV)
    dt (ms)
    i (mA/cm2)
    g (S/cm2)
    m_inf (1)
    m_step (1)
    m (1)
}

INITIAL {
    rates(v)
    m = m_inf
}

BREAKPOINT {
    SOLVE advance
    g = gbar * m
    i = g * (v - ehcn)
    CONDUCTANCE g
}

PROCEDURE advance() {
    rates(v)
    m = m + m_step * (m_inf - m)
}

PROCEDURE rates(v (mV)) {
    LOCAL a, b, x
    TABLE m_inf, m_step DEPEND dt FROM -150 TO 100 WITH 2501
    x = (v + 154.9) / 11.9
    if (fabs(x) < 1e-6) {
        a = 6.43e-3 * 11.9 * (1 - x / 2)
    } else {
        a = 6.43e-3 * (v + 154.9) / (exp(x) - 1)
    }
    b = 0.193 * exp(v / 33.1)
    m_inf = a / (a + b)
    m_step = 1 - exp(-dt * (a + b))
}
