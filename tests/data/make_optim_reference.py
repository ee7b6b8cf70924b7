#!/usr/bin/env python3
"""Writes tests/data/optim_reference.json: reference trajectories of torch.optim for tests/unit/test_optim.cpp.

Run from the repository root with a Python that has PyTorch (made with Debian python3-torch 1.13):
    /usr/bin/python3 tests/data/make_optim_reference.py

Each case runs STEPS steps of one optimiser over three parameter tensors A [2, 3], B [4] and C [3]. The C++
optimiser sees them as one flat block (A, B, C in that order, row-major); C is frozen (requires_grad=False,
no gradient), which the C++ side expresses with mask byte 0. Per step: gradients from a fixed sequence are
assigned to A and B, optionally clipped with torch.nn.utils.clip_grad_norm_, the optimiser steps with the lr
that a CosineAnnealingLR (or constant) schedule gives, then the schedule steps. Everything runs twice:
in float64 ("f64") and in float32 ("f32", the same float64 inputs rounded to float32).

The single-tensor code path is forced (foreach=False), as torch uses on CPU.
"""
import json
import math
import os

import torch

STEPS = 5
SHAPES = [(2, 3), (4,), (3,)]  # A, B, C (C frozen)
FROZEN = [False, False, True]

# Fixed inputs: initial parameters in [-2, 2] and, per step, gradients whose scale changes so that
# clipping is active on some steps and not on others. Entries are kept exact in float64.
gen = torch.Generator().manual_seed(20240611)
N = sum(math.prod(s) for s in SHAPES)
INIT = (torch.rand(N, generator=gen, dtype=torch.float64) * 4 - 2).tolist()
SCALES = [0.2, 3.0, 0.05, 1.5, 0.7]
GRADS = []
for k in range(STEPS):
    g = (torch.randn(N, generator=gen, dtype=torch.float64) * SCALES[k])
    g[3] = 0.0 if k % 2 == 0 else g[3]  # exact zero gradients (Adamax's eps path, Adam's denominator)
    GRADS.append(g.tolist())

CASES = [
    dict(name="adam_default", kind="adam", lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
         schedule=dict(kind="cosine", base_lr=1e-2, eta_min=0.0, total_steps=5), max_norm=1.0),
    dict(name="adam_wd", kind="adam", lr=5e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1,
         schedule=dict(kind="cosine", base_lr=5e-2, eta_min=1e-3, total_steps=7), max_norm=None),
    dict(name="adamw", kind="adamw", lr=2e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05,
         schedule=dict(kind="cosine", base_lr=2e-2, eta_min=1e-4, total_steps=5), max_norm=0.5),
    dict(name="adamax", kind="adamax", lr=5e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
         schedule=dict(kind="cosine", base_lr=5e-3, eta_min=0.0, total_steps=6), max_norm=None),
    dict(name="adamax_wd_clip", kind="adamax", lr=2e-2, beta1=0.7, beta2=0.9, eps=1e-3, weight_decay=0.01,
         schedule=dict(kind="constant", base_lr=2e-2, eta_min=0.0, total_steps=1), max_norm=2.0),
    dict(name="sgd_plain", kind="sgd", lr=0.1, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
         schedule=dict(kind="constant", base_lr=0.1, eta_min=0.0, total_steps=1), max_norm=None),
    dict(name="sgd_momentum_wd", kind="sgd", lr=0.05, momentum=0.9, dampening=0.1, nesterov=False,
         weight_decay=1e-3, schedule=dict(kind="cosine", base_lr=0.05, eta_min=0.0, total_steps=5), max_norm=1.0),
    dict(name="sgd_nesterov", kind="sgd", lr=0.05, momentum=0.8, dampening=0.0, nesterov=True,
         weight_decay=0.01, schedule=dict(kind="cosine", base_lr=0.05, eta_min=5e-3, total_steps=4), max_norm=None),
]


def make_optimizer(case, params):
    k = case["kind"]
    if k == "adam":
        return torch.optim.Adam(params, lr=case["lr"], betas=(case["beta1"], case["beta2"]), eps=case["eps"],
                                weight_decay=case["weight_decay"], foreach=False)
    if k == "adamw":
        return torch.optim.AdamW(params, lr=case["lr"], betas=(case["beta1"], case["beta2"]), eps=case["eps"],
                                 weight_decay=case["weight_decay"], foreach=False)
    if k == "adamax":
        return torch.optim.Adamax(params, lr=case["lr"], betas=(case["beta1"], case["beta2"]), eps=case["eps"],
                                  weight_decay=case["weight_decay"], foreach=False)
    if k == "sgd":
        return torch.optim.SGD(params, lr=case["lr"], momentum=case["momentum"], dampening=case["dampening"],
                               nesterov=case["nesterov"], weight_decay=case["weight_decay"], foreach=False)
    raise ValueError(k)


def run(case, dtype):
    params, offset = [], 0
    for shape, frozen in zip(SHAPES, FROZEN):
        n = math.prod(shape)
        p = torch.tensor(INIT[offset:offset + n], dtype=torch.float64).to(dtype).reshape(shape)
        params.append(torch.nn.Parameter(p, requires_grad=not frozen))
        offset += n
    trainable = [p for p in params if p.requires_grad]
    opt = make_optimizer(case, trainable)
    sched = None
    s = case["schedule"]
    assert s["base_lr"] == case["lr"]
    if s["kind"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s["total_steps"], eta_min=s["eta_min"])
    lrs, norms, traj = [], [], []
    for k in range(STEPS):
        offset = 0
        for p in params:
            n = p.numel()
            if p.requires_grad:
                p.grad = torch.tensor(GRADS[k][offset:offset + n], dtype=torch.float64).to(dtype).reshape(p.shape)
            offset += n
        if case["max_norm"] is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(trainable, case["max_norm"])))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
        traj.append(torch.cat([p.detach().reshape(-1) for p in params]).to(torch.float64).tolist())
    return lrs, norms, traj


def main():
    mask = []
    for shape, frozen in zip(SHAPES, FROZEN):
        mask += [0 if frozen else 1] * math.prod(shape)
    out = dict(torch_version=torch.__version__, steps=STEPS, mask=mask, init=INIT, grads=GRADS, cases=[])
    for case in CASES:
        lrs64, norms64, traj64 = run(case, torch.float64)
        _, norms32, traj32 = run(case, torch.float32)
        c = dict(case)
        c.update(lr=lrs64, total_norm_f64=norms64, total_norm_f32=norms32, params_f64=traj64, params_f32=traj32)
        out["cases"].append(c)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
