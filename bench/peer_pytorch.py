#!/usr/bin/env python3
"""Speed peer: the published PyTorch ELM neuron, timed on given shapes.

This is a re-implementation of the published PyTorch code (AaronSpieler/elmneuron @ 52e68a6,
src/expressive_leaky_memory_neuron.py = v1, src/expressive_leaky_memory_neuron_v2.py = v2,
src/modeling_utils.py), written the way that code does it, so that its speed is what a user of the
published code gets: a torch.jit.ScriptModule whose scripted `forward` loops over time steps and calls a
scripted `dynamics` step; routing by index_select over the whole input followed by the valid mask; the
MLP as nn.Sequential of nn.Linear + activation; custom_tanh = 1.7159 * tanh(2x/3); τ through a scaled
sigmoid; float32; torch.optim.Adam. Nothing here is tuned beyond what the published code does.
`--verify DIR` checks this implementation against the golden files of the published code
(tests/data/golden/v*_*.safetensors): outputs, gradients and three Adam steps.
`--published-code DIR` (or "published_code" in a request) times, or verifies, the published code itself
instead: DIR is a checkout of github.com/AaronSpieler/elmneuron, whose src/expressive_leaky_memory_neuron.py
(v1) and src/expressive_leaky_memory_neuron_v2.py (v2) classes `ELM` are imported as the package `src` and
built from the same config; each result's `peer_code` says which ran.

Input (one of):
  JSON request on stdin (what `elmneuron bench --peer` sends):
    {"threads": N, "repeats": R, "warmup": W, "seed": S,
     "shapes": [{"name": ..., "config": {published keys}, "batch": B, "time": T,
                 "input_kind": "neuronio" | "counts" | "onehot", "input_rate": P (optional: chance of an
                 event per channel and step, default 0.02 neuronio, 0.03 counts), "repeats": R (optional)}, ...]}
  or command-line arguments for one shape:
    peer_pytorch.py --config '{"num_input": 16, "num_output": 10}' --batch 16 --time 4096 \
                    --input onehot --threads 2 --repeats 3
  peer_pytorch.py --info          environment only (torch, threads, BLAS)
  peer_pytorch.py --sgemm-peak    GFLOP/s of torch.mm (the BLAS torch uses) on 2048 x 2048 float32 at --threads
  peer_pytorch.py --verify DIR    compare with the published code's golden files
  ... --published-code CHECKOUT   any of the above with the published code's own classes

Output: one JSON object per shape, one per line, on stdout; times in milliseconds (median of `repeats`
timed calls after `warmup` untimed ones):
  forward_ms           model.eval(), torch.no_grad(): y = model(X)
  forward_backward_ms  model.train(): zero_grad, y = model(X), loss = (y * dy).sum(), loss.backward()
  train_step_ms        the same plus optimizer.step() (torch.optim.Adam, lr 1e-4)
The peer is run at its best with at most N = "threads" threads (bench_at_its_best): the shape is timed at
1, 2, 4, ... and N threads (torch.set_num_threads, the BLAS pool limited to the same) and, above one thread,
also with each other installed Debian OpenBLAS build (pthreads / OpenMP, in a child process); each of the
three times is the fastest configuration's. `fastest` names the configuration of each time, `configurations`
has every configuration's times. ("thread_counts": [...] and "other_blas": false in a request restrict this.)
Plus the torch version, torch.get_num_threads(), the BLAS in use and the BLAS/OpenMP environment.
The process's environment is left as the user has it (e.g. OPENBLAS_CORETYPE): it is only reported.
"""

import argparse
import importlib
import inspect
import json
import math
import os
import platform
import re
import statistics
import struct
import subprocess
import sys
import sysconfig
import time
from typing import List

import torch
import torch.nn as nn
from torch import jit

# ---------------------------------------------------------------------------------------------------
# Model: the published code's structure (modeling_utils.py + the two ELM classes)
# ---------------------------------------------------------------------------------------------------


def scaled_sigmoid(x, lower_bound: float, upper_bound: float):
    return (upper_bound - lower_bound) * torch.sigmoid(x) + lower_bound


def inverse_scaled_sigmoid(x, lower_bound: float, upper_bound: float):
    x = torch.clamp(x, lower_bound + 1e-6, upper_bound - 1e-6)
    return torch.log((x - lower_bound) / (upper_bound - x))


def custom_tanh(x):
    # LeCun's scaled tanh
    return torch.tanh(x * 2 / 3) * 1.7159


def create_interlocking_indices(num_input: int):
    # 0, n/2, 1, n/2 + 1, ...: excitatory and inhibitory input of the same segment side by side
    half = num_input // 2
    steps = torch.arange(num_input)
    return (steps % 2) * half + torch.div(steps, 2, rounding_mode="floor")


def create_overlapping_window_indices(num_input: int, num_windows: int, num_elements_per_window: int):
    stride = math.ceil(num_input / num_windows)
    windows = torch.arange(num_windows).unsqueeze(1) * stride + torch.arange(num_elements_per_window).unsqueeze(0)
    valid = windows < num_input
    windows = torch.clamp(windows, max=num_input - 1)
    return windows.flatten(), valid.flatten()


class MLP(nn.Module):
    """num_layers x [Linear, activation] followed by Linear, as an nn.Sequential called `network`."""

    def __init__(self, input_size: int, hidden_size: int, num_output: int, num_layers: int,
                 activation: str = "relu"):
        super().__init__()
        activations = {"relu": nn.ReLU, "silu": nn.SiLU}
        layers = []
        size = input_size
        for _ in range(num_layers):
            layers.append(nn.Linear(size, hidden_size))
            layers.append(activations[activation]())
            size = hidden_size
        layers.append(nn.Linear(size, num_output))
        self.network = nn.Sequential(*layers)

    def forward(self, x):
        return self.network(x)


ROUTINGS = [None, "random_routing", "neuronio_routing"]


def routing_tensors(routing, num_input, num_branch, num_synapse_per_branch, num_synapse):
    if routing == "random_routing":
        indices = torch.randint(num_input, (num_synapse,))
        return indices, torch.ones_like(indices)
    if routing == "neuronio_routing":
        assert math.ceil(num_input / num_branch) <= num_synapse_per_branch
        interlocking = create_interlocking_indices(num_input)
        windows, valid = create_overlapping_window_indices(num_input, num_branch, num_synapse_per_branch)
        return interlocking[windows], valid
    return None, None


class ELMBase(jit.ScriptModule):
    """Constructor shared by both versions (the published classes repeat it)."""

    def __init__(self, version, num_input, num_output, num_memory=100, lambda_value=5.0, mlp_num_layers=1,
                 mlp_hidden_size=None, mlp_activation="relu", tau_value=5.0, memory_tau_min=1.0,
                 memory_tau_max=1000.0, learn_memory_tau=False, w_s_value=0.5, num_branch=None,
                 num_synapse_per_branch=1, input_to_synapse_routing=None, delta_t=1.0):
        super().__init__()
        self.num_input, self.num_output = num_input, num_output
        self.num_memory = num_memory
        self.lambda_value = lambda_value
        self.mlp_num_layers = mlp_num_layers
        self.mlp_activation = mlp_activation
        self.memory_tau_min = memory_tau_min
        # v2 keeps the upper bound strictly above the lower one; v1 uses it as given
        self.memory_tau_max = max(memory_tau_min + 3e-6, memory_tau_max) if version == "v2" else memory_tau_max
        self.learn_memory_tau = learn_memory_tau
        self.w_s_value = w_s_value
        self.num_synapse_per_branch = num_synapse_per_branch
        self.input_to_synapse_routing = input_to_synapse_routing
        self.delta_t = delta_t

        self.mlp_hidden_size = mlp_hidden_size if mlp_hidden_size else 2 * num_memory
        self.num_branch = num_input if num_branch is None else num_branch
        self.num_mlp_input = self.num_branch + num_memory
        self.num_synapse = num_synapse_per_branch * self.num_branch
        assert self.num_synapse == num_input or input_to_synapse_routing is not None
        assert input_to_synapse_routing in ROUTINGS

        self.mlp = MLP(self.num_mlp_input, self.mlp_hidden_size, num_memory, mlp_num_layers, mlp_activation)
        self._proto_w_s = nn.parameter.Parameter(torch.full((self.num_synapse,), w_s_value))
        self.w_y = nn.Linear(num_memory, num_output)
        # the synapse (v1) or branch (v2) trace timescale, fixed
        trace_size = self.num_synapse if version == "v1" else self.num_branch
        self._tau_trace_init = torch.full((trace_size,), tau_value)

        tau_m = torch.logspace(math.log10(self.memory_tau_min + 1e-6), math.log10(self.memory_tau_max - 1e-6),
                               num_memory)
        tau_m = inverse_scaled_sigmoid(tau_m, self.memory_tau_min, self.memory_tau_max)
        self._proto_tau_m = nn.parameter.Parameter(tau_m, requires_grad=learn_memory_tau)

        indices, mask = routing_tensors(input_to_synapse_routing, num_input, self.num_branch,
                                        num_synapse_per_branch, self.num_synapse)
        self.input_to_synapse_indices = nn.parameter.Parameter(indices, requires_grad=False)
        self.valid_indices_mask = nn.parameter.Parameter(mask, requires_grad=False)


class ELMv1(ELMBase):
    """Published v1: synapse traces s, memory update m = κ_m m + λ (1 - κ_m) Δm."""

    __constants__ = ["num_input", "num_output", "num_memory", "lambda_value", "mlp_num_layers",
                     "mlp_activation", "memory_tau_min", "memory_tau_max", "learn_memory_tau", "w_s_value",
                     "num_synapse_per_branch", "input_to_synapse_routing", "delta_t"]

    def __init__(self, num_input: int, num_output: int, tau_s_value: float = 5.0, **kwargs):
        super().__init__("v1", num_input, num_output, tau_value=tau_s_value, **kwargs)
        self.tau_s_value = tau_s_value
        self.tau_s = nn.parameter.Parameter(self._tau_trace_init, requires_grad=False)
        del self._tau_trace_init

    @property
    def tau_m(self):
        return scaled_sigmoid(self._proto_tau_m, self.memory_tau_min, self.memory_tau_max)

    @property
    def kappa_m(self):
        return torch.exp(-self.delta_t / torch.clamp(self.tau_m, min=1e-6))

    @property
    def kappa_s(self):
        return torch.exp(-self.delta_t / torch.clamp(self.tau_s, min=1e-6))

    @property
    def w_s(self):
        return torch.relu(self._proto_w_s)

    def route_input_to_synapses(self, x):
        if self.input_to_synapse_routing is not None:
            x = torch.index_select(x, 2, self.input_to_synapse_indices)
            x = x * self.valid_indices_mask
        return x

    @jit.script_method
    def dynamics(self, x, s_prev, m_prev, w_s, kappa_s, kappa_m):
        batch_size, _ = x.shape
        s_t = kappa_s * s_prev + w_s * x
        syn_input = s_t.view(batch_size, self.num_branch, -1).sum(dim=-1)
        delta_m_t = custom_tanh(self.mlp(torch.cat([syn_input, kappa_m * m_prev], dim=-1)))
        m_t = kappa_m * m_prev + self.lambda_value * (1 - kappa_m) * delta_m_t
        y_t = self.w_y(m_t)
        return y_t, s_t, m_t

    @jit.script_method
    def forward(self, X):
        batch_size, T, _ = X.shape
        w_s = self.w_s
        kappa_s, kappa_m = self.kappa_s, self.kappa_m
        s_prev = torch.zeros(batch_size, len(kappa_s), device=X.device)
        m_prev = torch.zeros(batch_size, len(kappa_m), device=X.device)
        outputs = torch.jit.annotate(List[torch.Tensor], [])
        inputs = self.route_input_to_synapses(X)
        for t in range(T):
            y_t, s_prev, m_prev = self.dynamics(inputs[:, t], s_prev, m_prev, w_s, kappa_s, kappa_m)
            outputs.append(y_t)
        return torch.stack(outputs, dim=-2)


class ELMv2(ELMBase):
    """Published v2: branch traces b, memory update m = κ_m m + (1 - κ_λ) Δm, κ_λ = exp(-Δt λ / τ_m)."""

    __constants__ = ELMv1.__constants__

    def __init__(self, num_input: int, num_output: int, tau_b_value: float = 5.0, **kwargs):
        super().__init__("v2", num_input, num_output, tau_value=tau_b_value, **kwargs)
        self.tau_b_value = tau_b_value
        self.tau_b = nn.parameter.Parameter(self._tau_trace_init, requires_grad=False)
        del self._tau_trace_init

    @property
    def tau_m(self):
        return scaled_sigmoid(self._proto_tau_m, self.memory_tau_min, self.memory_tau_max)

    @property
    def kappa_m(self):
        return torch.exp(-self.delta_t / torch.clamp(self.tau_m, min=1e-6))

    @property
    def kappa_lambda(self):
        return torch.exp(-self.delta_t * self.lambda_value / torch.clamp(self.tau_m, min=1e-6))

    @property
    def kappa_b(self):
        return torch.exp(-self.delta_t / torch.clamp(self.tau_b, min=1e-6))

    @property
    def w_s(self):
        return torch.relu(self._proto_w_s)

    def route_input_to_synapses(self, x):
        if self.input_to_synapse_routing is not None:
            x = torch.index_select(x, 2, self.input_to_synapse_indices)
            x = x * self.valid_indices_mask
        return x

    @jit.script_method
    def dynamics(self, x, b_prev, m_prev, w_s, kappa_b, kappa_m, kappa_lambda):
        batch_size, _ = x.shape
        b_inp = (w_s * x).view(batch_size, self.num_branch, -1).sum(dim=-1)
        b_t = kappa_b * b_prev + b_inp
        delta_m_t = custom_tanh(self.mlp(torch.cat([b_t, kappa_m * m_prev], dim=-1)))
        m_t = kappa_m * m_prev + (1 - kappa_lambda) * delta_m_t
        y_t = self.w_y(m_t)
        return y_t, b_t, m_t

    @jit.script_method
    def forward(self, X):
        batch_size, T, _ = X.shape
        w_s = self.w_s
        kappa_b, kappa_m, kappa_lambda = self.kappa_b, self.kappa_m, self.kappa_lambda
        b_prev = torch.zeros(batch_size, len(kappa_b), device=X.device)
        m_prev = torch.zeros(batch_size, len(kappa_m), device=X.device)
        outputs = torch.jit.annotate(List[torch.Tensor], [])
        inputs = self.route_input_to_synapses(X)
        for t in range(T):
            y_t, b_prev, m_prev = self.dynamics(inputs[:, t], b_prev, m_prev, w_s, kappa_b, kappa_m, kappa_lambda)
            outputs.append(y_t)
        return torch.stack(outputs, dim=-2)


# Published constructor keywords; the rest of what `elmneuron` writes into a config (to_json) is either the
# class choice or one of the paper's extensions that the published code lacks.
COMMON_KEYS = {"num_input", "num_output", "num_memory", "lambda_value", "mlp_num_layers", "mlp_hidden_size",
               "mlp_activation", "memory_tau_min", "memory_tau_max", "learn_memory_tau", "w_s_value",
               "num_branch", "num_synapse_per_branch", "input_to_synapse_routing", "delta_t"}


# The published code's files in a checkout of github.com/AaronSpieler/elmneuron (`--published-code DIR`):
# each version's class is `ELM` in src/<file>.py, imported as the package `src` the way its notebooks do.
PUBLISHED_FILES = {"v1": "expressive_leaky_memory_neuron", "v2": "expressive_leaky_memory_neuron_v2"}


class PublishedCodeError(Exception):
    """The --published-code folder does not give the published class (layout, import)."""


def published_class(folder, version):
    """The published code's ELM class of `version` from the checkout at `folder` (its src/ package)."""
    folder = os.path.abspath(folder)
    name = PUBLISHED_FILES[version]
    path = os.path.join(folder, "src", name + ".py")
    if not os.path.isfile(path):
        raise PublishedCodeError(
            f"--published-code {folder}: expected the published {version} class in {path} (the folder should be "
            f"a checkout of github.com/AaronSpieler/elmneuron, whose src/ holds {name}.py)")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module("src." + name)
    except Exception as e:
        raise PublishedCodeError(
            f"--published-code {folder}: importing src/{name}.py failed: {type(e).__name__}: {e} (the published "
            f"package also imports src/neuronio/neuronio_data_utils.py, which needs numpy, matplotlib and "
            f"seaborn: scripts/install-deps.sh --peer installs them)") from None
    if os.path.realpath(getattr(module, "__file__", "") or "") != os.path.realpath(path):
        raise PublishedCodeError(f"--published-code {folder}: the package `src` was already imported from "
                                 f"{getattr(module, '__file__', '?')}, not from {folder}")
    if not hasattr(module, "ELM"):
        raise PublishedCodeError(f"--published-code {folder}: {path} has no class ELM")
    return module.ELM


def peer_code(published_folder):
    """What the peer runs: this file's re-implementation, or the published code at `published_folder` (with
    its git commit, if the folder is a git checkout)."""
    if not published_folder:
        return {"kind": "re-implementation", "file": os.path.abspath(__file__)}
    folder = os.path.abspath(published_folder)
    # Only the folder's own checkout: inside another repository, git would name that one's commit.
    top = run_quiet(["git", "-C", folder, "rev-parse", "--show-toplevel"]).strip()
    own = bool(top) and os.path.realpath(top) == os.path.realpath(folder)
    commit = run_quiet(["git", "-C", folder, "rev-parse", "HEAD"]).strip() if own else ""
    return {"kind": "published", "folder": folder, "git_commit": commit or None}


def build_model(config, version=None, published_folder=None):
    """Model from a config dict with the published keys (plus elmneuron's model_version / extensions); with
    `published_folder`, an instance of the published code's own class from that checkout."""
    cfg = dict(config)
    version = cfg.pop("model_version", None) or version or "v1"
    if version not in ("v1", "v2"):
        raise ValueError(f"model_version must be v1 or v2, not {version!r}")
    learn_w_s = cfg.pop("learn_w_s", True)
    lo, hi = cfg.get("memory_tau_min", 1.0), cfg.get("memory_tau_max", 1000.0)
    for key, bound in (("memory_tau_init_min", lo), ("memory_tau_init_max", hi)):
        if key in cfg:
            if abs(float(cfg.pop(key)) - float(bound)) > 1e-9:
                raise ValueError(f"{key} differs from the bound; the published code has no separate init range")
    trace_key = "tau_s_value" if version == "v1" else "tau_b_value"
    other_key = "tau_b_value" if version == "v1" else "tau_s_value"
    if other_key in cfg:
        cfg[trace_key] = cfg.pop(other_key)
    unknown = set(cfg) - COMMON_KEYS - {trace_key}
    if unknown:
        raise ValueError(f"unknown config keys for the published {version} class: {sorted(unknown)}")
    for key in ("lambda_value", "tau_s_value", "tau_b_value", "memory_tau_min", "memory_tau_max", "w_s_value",
                "delta_t"):
        if key in cfg:  # TorchScript constants: 150 must be 150.0
            cfg[key] = float(cfg[key])
    if cfg.get("mlp_hidden_size") == 0:
        cfg["mlp_hidden_size"] = None
    if published_folder:
        cls = published_class(published_folder, version)
        # The published v1 class of the paper's release has no mlp_activation (always ReLU); later ones may.
        if "mlp_activation" not in inspect.signature(cls.__init__).parameters:
            activation = cfg.pop("mlp_activation", "relu")
            if activation != "relu":
                raise ValueError(f"mlp_activation {activation!r}: the published {version} class at "
                                 f"{published_folder} takes no mlp_activation (always ReLU)")
    else:
        cls = ELMv1 if version == "v1" else ELMv2
    model = cls(**cfg)
    if not learn_w_s:  # paper's vanilla ELM: w_s fixed (published code always trains it)
        model._proto_w_s.requires_grad_(False)
    return model, version


# ---------------------------------------------------------------------------------------------------
# Environment: torch, threads, BLAS
# ---------------------------------------------------------------------------------------------------

ENV_PATTERN = re.compile(r"BLAS|OMP|MKL|GOTO|NVPL|KMP|TORCH|LD_PRELOAD|LD_LIBRARY_PATH")


def run_quiet(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def multiarch():
    """Debian's multiarch triplet (x86_64-linux-gnu): the folder of the system libraries under /usr/lib."""
    return sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"


def thread_pools():
    """The thread pools mapped into this process (threadpoolctl: OpenMP, BLAS), or why they cannot be read."""
    try:
        import threadpoolctl

        return [{k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "threading_layer",
                                       "architecture", "filepath")}
                for p in threadpoolctl.threadpool_info()]
    except Exception as e:  # not installed, or failed to inspect
        return f"unavailable: {e}"


def blas_pool(pools):
    """The BLAS pool of thread_pools(), or None."""
    return next((p for p in pools if p.get("user_api") == "blas"), None) if isinstance(pools, list) else None


def blas_info():
    info = {}
    a = torch.randn(64, 64)
    (a @ a).sum().item()  # make sure the BLAS is loaded
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[5].startswith("/"):
                    base = os.path.basename(fields[5])
                    if re.search(r"blas|lapack|mkl|nvpl|blis|atlas|omp", base, re.I):
                        libs.add(os.path.realpath(fields[5]))
    except OSError:
        pass
    info["loaded_libraries"] = sorted(libs)
    for name in ("libblas.so.3", "liblapack.so.3"):
        out = run_quiet(["update-alternatives", "--query", f"{name}-{multiarch()}"])
        m = re.search(r"^Value:\s*(\S+)", out, re.M)
        if m:
            info[f"{name}_alternative"] = m.group(1)
    m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    info["torch_build_blas_info"] = m.group(1) if m else None
    info["threadpoolctl"] = thread_pools()
    # One-line summary: the BLAS implementation that is actually mapped into the process.
    summary = None
    p = blas_pool(info["threadpoolctl"])
    if p is not None:
        summary = (f"{p.get('internal_api')} {p.get('version')} ({p.get('threading_layer')}, "
                   f"{p.get('num_threads')} threads, core {p.get('architecture')}) {p.get('filepath')}")
    if summary is None:
        blas_libs = [lib for lib in libs if re.search(r"blas|mkl|nvpl|blis", os.path.basename(lib), re.I)]
        summary = ", ".join(sorted(blas_libs)) or "unknown"
    info["summary"] = summary
    return info


def environment(published_folder=None):
    return {
        "peer": (f"pytorch (the published code itself, from {os.path.abspath(published_folder)})"
                 if published_folder else "pytorch (published ELM code structure, TorchScript)"),
        "python": sys.executable + " " + platform.python_version(),
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "torch_parallel_backend": next((l.split(":", 1)[1].strip() for l in torch.__config__.parallel_info()
                                        .splitlines() if l.startswith("ATen parallel backend")), None),
        "blas": blas_info(),
        "env": {k: v for k, v in sorted(os.environ.items()) if ENV_PATTERN.search(k)},
        "cpu_count": os.cpu_count(),
    }


# ---------------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------------


def make_input(kind, batch, time_steps, num_input, seed, rate=None):
    """Dense [batch, time, num_input] input with the statistics of elm::synthetic_input; rate: the chance of
    an event per channel and step (neuronio and counts only; default 0.02 and 0.03)."""
    if kind not in ("neuronio", "counts", "onehot"):
        raise ValueError(f"input kind must be neuronio, counts or onehot, not {kind!r}")
    if rate is not None and (kind == "onehot" or not 0 <= rate <= 1):
        raise ValueError(f"input_rate must be in [0, 1] and only for neuronio or counts input, not {rate!r} "
                         f"for {kind}")
    g = torch.Generator().manual_seed(seed)
    if kind == "onehot":
        idx = torch.randint(num_input, (batch, time_steps), generator=g)
        return torch.nn.functional.one_hot(idx, num_input).to(torch.float32)
    if kind == "neuronio":  # {-1, 0, +1}: excitatory first half +1, inhibitory second half -1; 2 % events
        events = torch.rand(batch, time_steps, num_input, generator=g) < (0.02 if rate is None else rate)
        sign = torch.where(torch.arange(num_input) < num_input // 2, 1.0, -1.0)
        return events.to(torch.float32) * sign
    # counts: SHD-like spike counts: 3 % events, value 1 (90 %) or 2 (10 %)
    events = torch.rand(batch, time_steps, num_input, generator=g) < (0.03 if rate is None else rate)
    two = torch.rand(batch, time_steps, num_input, generator=g) < 0.1
    return events.to(torch.float32) * (1.0 + two.to(torch.float32))


def time_median(fn, repeats, warmup):
    for _ in range(warmup):  # TorchScript's profiling executor optimises the graph over the first calls
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times


def bench_shape(shape, repeats, warmup, seed):
    torch.manual_seed(seed)
    model, version = build_model(shape["config"], shape.get("model_version"), shape.get("published_code"))
    batch, steps, kind = int(shape["batch"]), int(shape["time"]), shape.get("input_kind", "counts")
    X = make_input(kind, batch, steps, model.num_input, seed + 1, shape.get("input_rate"))
    dy = torch.full((batch, steps, model.num_output), 1e-3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def forward():
        model.eval()
        with torch.no_grad():
            model(X)

    def forward_backward():
        model.train()
        model.zero_grad()
        y = model(X)
        (y * dy).sum().backward()

    def train_step():
        model.train()
        optimizer.zero_grad()
        y = model(X)
        (y * dy).sum().backward()
        optimizer.step()

    t_start = time.perf_counter()
    fwd, fwd_all = time_median(forward, repeats, warmup)
    fb, fb_all = time_median(forward_backward, repeats, warmup)
    tr, tr_all = time_median(train_step, repeats, warmup)
    return {
        "shape": shape.get("name", "custom"),
        "model_version": version,
        "peer_code": peer_code(shape.get("published_code")),
        "batch": batch,
        "time": steps,
        "input_kind": kind,
        "input_rate": shape.get("input_rate"),
        "input_events": int((X != 0).sum().item()),
        "num_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "repeats": repeats,
        "warmup": warmup,
        "forward_ms": fwd,
        "forward_backward_ms": fb,
        "train_step_ms": tr,
        "forward_ms_all": fwd_all,
        "forward_backward_ms_all": fb_all,
        "train_step_ms_all": tr_all,
        "forward_ms_per_step": fwd / steps,
        "train_ms_per_step": tr / steps,
        "wall_s": time.perf_counter() - t_start,
    }


def profile_shape(shape, seed):
    """Where the peer's time goes: torch.profiler's operator table for one forward and one fwd+bwd."""
    torch.manual_seed(seed)
    model, _ = build_model(shape["config"], shape.get("model_version"), shape.get("published_code"))
    X = make_input(shape.get("input_kind", "counts"), int(shape["batch"]), int(shape["time"]), model.num_input,
                   seed + 1, shape.get("input_rate"))
    for title, grad in (("forward (no_grad)", False), ("forward + backward", True)):
        model.train(grad)
        with torch.set_grad_enabled(grad):
            for _ in range(2):
                model(X)
            with torch.profiler.profile() as prof:
                y = model(X)
                if grad:
                    y.sum().backward()
        print(f"== {shape.get('name', 'custom')}: {title}", file=sys.stderr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), file=sys.stderr)


def sgemm_peak(n=2048, repeats=5):
    """Best-of-`repeats` GFLOP/s of one n x n x n float32 torch.mm (BLAS sgemm) after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    (a @ b).sum().item()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def set_threads(threads):
    """torch's intra-op threads, and the BLAS pool limited to the same (threadpoolctl, if installed)."""
    limits = None
    if threads and threads > 0:
        torch.set_num_threads(threads)
        try:
            import threadpoolctl

            limits = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
        except Exception:
            limits = None
    return limits


def thread_counts(threads):
    """The thread counts the peer is timed at when it may use `threads`: 1, 2, 4, ... below it, and `threads`
    (0: torch's default only)."""
    if not threads or threads <= 0:
        return [0]
    counts, t = {threads}, 1
    while t < threads:
        counts.add(t)
        t *= 2
    return sorted(counts)


OPENBLAS_BUILDS = ("openblas-pthread", "openblas-openmp")  # Debian's libopenblas0-pthread / -openmp


def blas_build(info):
    """The folder name of the libblas.so.3 this process loaded (openblas-pthread, openblas-openmp, blas, ...)."""
    for lib in info["loaded_libraries"]:
        if os.path.basename(lib).startswith("libblas.so"):
            return os.path.basename(os.path.dirname(lib))
    return "unknown"


def other_openblas_builds(info):
    """Folders of Debian's OpenBLAS builds that are installed besides the one this process loaded (the
    libblas.so.3 alternative): the dynamic loader takes one of them first through LD_LIBRARY_PATH. None when
    this process did not load a Debian OpenBLAS (e.g. a pip torch with its own BLAS), where that changes
    nothing."""
    loaded = blas_build(info)
    if loaded not in OPENBLAS_BUILDS:
        return []
    return [d for d in (f"/usr/lib/{multiarch()}/{b}" for b in OPENBLAS_BUILDS)
            if os.path.basename(d) != loaded and os.path.isfile(os.path.join(d, "libblas.so.3"))]


def blas_threads():
    """Threads of the BLAS pool now, or None when it cannot be read."""
    pool = blas_pool(thread_pools())
    return pool["num_threads"] if pool else None


MEASUREMENTS = ("forward_ms", "forward_backward_ms", "train_step_ms")


CHILD_TIMEOUT_S = 4 * 3600  # a child that hangs must not hang the whole benchmark


def bench_in_child(shape, counts, repeats, warmup, seed, blas_dir):
    """This script in a child process whose dynamic loader takes libblas.so.3 from `blas_dir` first: its
    configurations (one per thread count of `counts`). Raises RuntimeError when it fails or did not load that
    build."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = blas_dir + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    request = {"threads": max(counts), "thread_counts": counts, "other_blas": False, "repeats": repeats,
               "warmup": warmup, "seed": seed, "shapes": [shape]}
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__)], input=json.dumps(request), env=env,
                           capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the peer with {blas_dir} did not finish in {CHILD_TIMEOUT_S} s") from None
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode != 0 or not lines or "configurations" not in lines[-1]:
        raise RuntimeError(f"the peer with {blas_dir} failed (exit status {r.returncode}): "
                           f"{(lines[-1].get('error') if lines else None) or r.stderr.strip()[-500:]}")
    configurations = lines[-1]["configurations"]
    expected = peer_code(shape.get("published_code"))
    if lines[-1].get("peer_code") != expected:
        raise RuntimeError(f"the peer with {blas_dir} ran {lines[-1].get('peer_code')}, not {expected}")
    wrong = {c["blas"] for c in configurations} - {os.path.basename(blas_dir)}
    if wrong:
        raise RuntimeError(f"the peer with LD_LIBRARY_PATH={blas_dir} loaded {sorted(wrong)} instead")
    return configurations


def bench_at_its_best(shape, counts, repeats, warmup, seed, other_blas, info):
    """The peer run at its best with at most max(counts) threads: bench_shape at each thread count of
    `counts` and, with more than one thread, with each other installed OpenBLAS build (other_blas; `info` is
    this process's blas_info); each of the three times is the fastest configuration's, named in `fastest`;
    every configuration's times are in `configurations` (with the torch and BLAS thread counts it really ran
    with), a build that failed in `failed_configurations`.

    Why: the published code runs many tiny ops per time step. With several threads each op may open a parallel
    region, and with Debian's default OpenBLAS (pthreads) torch's OpenMP pool and OpenBLAS's own thread pool
    compete for the cores: on a 2-core machine its 2-thread train step was measured 2-5x slower than its
    1-thread one, while the OpenMP build of OpenBLAS (which shares torch's pool) made 2 threads the fastest for
    some shapes. A user would pick what runs fastest."""
    build = blas_build(info)
    configurations, failed, result = [], [], None
    for t in counts:
        limits = set_threads(t)
        ran_with = {"torch_threads": torch.get_num_threads(), "blas_threads": blas_threads()}
        r = bench_shape(shape, repeats, warmup, seed)
        if limits is not None:
            limits.restore_original_limits()
        if result is None:  # the shape's own fields (batch, time, events, parameters ...), not its times
            result = {k: v for k, v in r.items() if not k.startswith(MEASUREMENTS)}
        configurations.append({"threads": t, "blas": build, **ran_with, "wall_s": r["wall_s"],
                               **{k: r[k] for k in MEASUREMENTS}, **{k + "_all": r[k + "_all"] for k in MEASUREMENTS}})
    multi = [t for t in counts if t > 1]
    if other_blas and multi:
        for d in other_openblas_builds(info):
            try:
                configurations += bench_in_child(shape, multi, repeats, warmup, seed, d)
            except RuntimeError as e:  # the configurations that ran still count; say what did not
                failed.append({"blas": os.path.basename(d), "error": str(e)})
    result["thread_counts"] = list(counts)
    result["fastest"] = {}
    for key in MEASUREMENTS:
        best = min(configurations, key=lambda c: c[key])
        result[key] = best[key]
        result[key + "_all"] = best[key + "_all"]
        result["fastest"][key] = {"threads": best["threads"], "blas": best["blas"]}
    result["forward_ms_per_step"] = result["forward_ms"] / result["time"]
    result["train_ms_per_step"] = result["train_step_ms"] / result["time"]
    result["configurations"] = configurations
    if failed:
        result["failed_configurations"] = failed
    result["wall_s"] = sum(c["wall_s"] for c in configurations)
    return result


# ---------------------------------------------------------------------------------------------------
# Verification against the published code's golden files
# ---------------------------------------------------------------------------------------------------

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BOOL": torch.bool}
ITEMSIZE = {"F32": 4, "F64": 8, "I64": 8, "BOOL": 1}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, h in header.items():
        begin, end = h["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[h["dtype"]]) if end > begin else \
            torch.empty(0, dtype=DTYPES[h["dtype"]])
        tensors[name] = t.reshape(h["shape"]).clone()
    return meta, tensors


def rel_err(a, b):
    """Largest difference relative to the largest finite reference value; non-finite entries must be equal."""
    finite = torch.isfinite(b)
    if not torch.equal(a[~finite], b[~finite]):
        return math.inf
    a, b = a[finite], b[finite]
    if b.numel() == 0:
        return 0.0
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).item()


def verify(folder, published_folder=None):
    files = sorted(f for f in os.listdir(folder) if re.match(r"v[12]_.*\.safetensors$", f))
    if not files:
        raise SystemExit(f"no v1_*/v2_* golden files in {folder}")
    ok = True
    # float64 like the reference: the published forward creates its state with the default dtype
    torch.set_default_dtype(torch.float64)
    for name in files:
        meta, t = read_safetensors(os.path.join(folder, name))
        config = json.loads(meta["config"])
        try:
            model, _ = build_model(config, meta["model_version"], published_folder)
        except (ValueError, PublishedCodeError) as e:  # e.g. a v2 case and a checkout without the v2 class
            print(json.dumps({"file": name, "ok": False, "error": str(e)}))
            ok = False
            continue
        state = {k[len("param."):]: v for k, v in t.items() if k.startswith("param.")}
        own = model.state_dict()
        # the published code registers the routing tensors even without routing; empty ones may be left out
        own = {k: v for k, v in own.items() if k in state or v.numel() > 0}
        if set(state) != set(own):
            print(json.dumps({"file": name, "error": f"state_dict names differ: {sorted(set(state) ^ set(own))}"}))
            ok = False
            continue
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
        model = model.double()
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        res = {"file": name, "trainable_matches": trainable == json.loads(meta["trainable"])}
        X = t["input"].double()
        y = model(X)
        res["output_rel_err"] = rel_err(y.detach(), t["output"])
        (y * t["grad_output"]).sum().backward()
        params = dict(model.named_parameters())
        res["grad_rel_err"] = max(rel_err(params[k[5:]].grad, v) for k, v in t.items() if k.startswith("grad."))
        adam = json.loads(meta["adam"])
        model.zero_grad()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=adam["lr"],
                               betas=tuple(adam["betas"]), eps=adam["eps"], weight_decay=adam["weight_decay"])
        for _ in range(adam["steps"]):
            opt.zero_grad()
            (model(X) * t["grad_output"]).sum().backward()
            opt.step()
        res["adam_rel_err"] = max(rel_err(params[k[6:]].detach(), v) for k, v in t.items()
                                  if k.startswith("adam3."))
        res["ok"] = bool(res["trainable_matches"] and res["output_rel_err"] < 1e-9 and
                         res["grad_rel_err"] < 1e-8 and res["adam_rel_err"] < 1e-8)
        ok = ok and res["ok"]
        print(json.dumps(res), flush=True)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="model config: JSON text or a .json file (published keys)")
    ap.add_argument("--model-version", choices=["v1", "v2"], help="class when the config does not say (default v1)")
    ap.add_argument("--name", default="custom")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--time", type=int, default=500)
    ap.add_argument("--input", dest="input_kind", default="counts", choices=["neuronio", "counts", "onehot"])
    ap.add_argument("--input-rate", type=float, help="chance of an event per channel and step (neuronio, counts)")
    ap.add_argument("--threads", type=int, default=0,
                    help="at most this many threads: the peer is timed at 1, 2, 4, ... and this many and, above "
                         "one, with each installed OpenBLAS build; its fastest configuration counts (0: torch's "
                         "default only)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--info", action="store_true", help="print the environment only")
    ap.add_argument("--sgemm-peak", action="store_true",
                    help="print the GFLOP/s of torch.mm on 2048 x 2048 float32 (with --threads) and the environment")
    ap.add_argument("--profile", action="store_true",
                    help="also print torch.profiler's top operators of one forward and one fwd+bwd to stderr")
    ap.add_argument("--verify", metavar="DIR", help="check against the published code's golden files")
    ap.add_argument("--published-code", metavar="DIR",
                    help="time (or --verify) the published code itself instead of this file's re-implementation: "
                         "DIR is a checkout of github.com/AaronSpieler/elmneuron (its src/ package is imported)")
    args = ap.parse_args()

    try:
        if args.published_code:  # its layout and import checked before anything is timed
            published_class(args.published_code, "v1")
        if args.verify:
            return verify(args.verify, args.published_code)
    except PublishedCodeError as e:
        print(json.dumps({"error": str(e)}), flush=True)
        return 2

    if args.config is None and not args.info and not args.sgemm_peak:
        request = json.load(sys.stdin)
        if "shapes" not in request:
            keys = ("threads", "repeats", "warmup", "seed", "thread_counts", "other_blas", "published_code")
            request = {"shapes": [request], **{k: request[k] for k in keys if k in request}}
    else:
        request = {"threads": args.threads, "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed,
                   "shapes": []}
        if args.config is not None:
            text = open(args.config).read() if os.path.isfile(args.config) else args.config
            request["shapes"].append({"name": args.name, "config": json.loads(text), "batch": args.batch,
                                      "time": args.time, "input_kind": args.input_kind,
                                      "input_rate": args.input_rate, "model_version": args.model_version})

    published = args.published_code or request.get("published_code")
    for shape in request["shapes"]:  # each shape carries it, also into the child processes of other BLAS builds
        if published and not shape.get("published_code"):
            shape["published_code"] = published
    threads = int(request.get("threads", 0) or 0)
    limits = set_threads(threads)  # noqa: F841 (keeps the BLAS limit for --info and --sgemm-peak)
    env = environment(published)
    if args.info:
        print(json.dumps(env), flush=True)
        return 0
    if args.sgemm_peak:
        print(json.dumps({"sgemm_gflops": sgemm_peak(), **env}), flush=True)
        return 0
    status = 0
    for shape in request["shapes"]:
        repeats = int(shape.get("repeats", request.get("repeats", 3)))
        warmup = int(shape.get("warmup", request.get("warmup", 2)))
        try:
            counts = request.get("thread_counts") or thread_counts(threads)
            result = bench_at_its_best(shape, [int(c) for c in counts], max(1, repeats), max(0, warmup),
                                       int(request.get("seed", 0)), bool(request.get("other_blas", True)),
                                       env["blas"])
        except Exception as e:  # report per shape, keep going
            result = {"shape": shape.get("name", "custom"), "error": f"{type(e).__name__}: {e}"}
            status = 1
        result.update(env)
        print(json.dumps(result), flush=True)
        if args.profile and "error" not in result:
            profile_shape(shape, int(request.get("seed", 0)))
    return status


if __name__ == "__main__":
    sys.exit(main())
