TITLE ElmIh: hyperpolarisation-activated cation current (HCN), one gate

COMMENT
Written for elmneuron (tools/neuron). Rate functions of Kole, Hallermann & Stuart 2006
(J Neurosci 26:1677, L5 pyramidal apical dendrite, fitted at 34 C; also used by Hay et al.
2011). Rates in 1/ms:
  alpha = 6.43e-3 (v + 154.9) / (exp((v + 154.9) / 11.9) - 1)
  beta  = 0.193 exp(v / 33.1)
  m' = (m_inf - m) / tau_m,  m_inf = alpha / (alpha + beta),  tau_m = 1 / (alpha + beta)
  i = gbar m (v - ehcn),  ehcn = -45 mV
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
    i (mA/cm2)
    g (S/cm2)
    m_inf (1)
    tau_m (ms)
}

STATE { m }

INITIAL {
    rates(v)
    m = m_inf
}

BREAKPOINT {
    SOLVE gate METHOD cnexp
    g = gbar * m
    i = g * (v - ehcn)
}

DERIVATIVE gate {
    rates(v)
    m' = (m_inf - m) / tau_m
}

PROCEDURE rates(v (mV)) {
    LOCAL a, b, x
    TABLE m_inf, tau_m FROM -150 TO 100 WITH 2500
    x = (v + 154.9) / 11.9
    if (fabs(x) < 1e-6) {
        a = 6.43e-3 * 11.9 * (1 - x / 2)
    } else {
        a = 6.43e-3 * (v + 154.9) / (exp(x) - 1)
    }
    b = 0.193 * exp(v / 33.1)
    m_inf = a / (a + b)
    tau_m = 1 / (a + b)
}
