#!/usr/bin/env python3
"""PNG plots of elmneuron results (matplotlib, Agg backend). Called by the elmneuron CLI after it has
written its numbers (JSON/CSV/safetensors), so a plot failure never loses a result.

  elm_plots.py roc --csv roc.csv --out roc.png [--title T]
  elm_plots.py traces --data example.safetensors --out traces.png [--title T]
  elm_plots.py curves --train-csv train_log.csv [--valid-csv valid_log.csv] --out learning_curves.png
  elm_plots.py scaling --csv scaling.csv --out scaling.png      (elmneuron bench --scaling)
"""
import argparse
import csv
import json
import struct
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "U8": np.uint8, "BOOL": np.bool_, "I8": np.int8}


def read_safetensors(path):
    """Tensors of a safetensors file (plain format: 8-byte header length, JSON header, data)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out, meta


def plot_roc(args):
    fpr, tpr = [], []
    with open(args.csv) as f:
        for row in csv.DictReader(f):
            fpr.append(float(row["fpr"]))
            tpr.append(float(row["tpr"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, log in zip(axes, (False, True)):
        ax.plot(fpr, tpr, lw=1.5)
        ax.plot([1e-5 if log else 0, 1], [1e-5 if log else 0, 1], "k:", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        if log:
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1)
            ax.set_title("ROC, log FP axis")
        else:
            ax.set_title(args.title or "spike prediction ROC")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def plot_traces(args):
    t, meta = read_safetensors(args.data)
    ev_t, ev_c, ev_v = t["event_time"], t["event_channel"], t["event_value"]
    time = np.arange(t["soma_true"].shape[0])
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [2, 1.4, 1]})
    exc = ev_v > 0
    axes[0].scatter(ev_t[exc], ev_c[exc], s=0.3, c="tab:red", label="excitatory")
    axes[0].scatter(ev_t[~exc], ev_c[~exc], s=0.3, c="tab:blue", label="inhibitory")
    axes[0].set_ylabel("input channel")
    axes[0].legend(loc="upper right", markerscale=10, fontsize=8)
    axes[0].set_title(args.title or meta.get("title", "example simulation"))
    axes[1].plot(time, t["soma_true"], "k", lw=0.8, label="true soma")
    axes[1].plot(time, t["soma_pred"], "tab:orange", lw=0.8, label="ELM prediction")
    axes[1].set_ylabel("mV above -67.7")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[2].plot(time, t["spike_prob"], "tab:orange", lw=0.8, label="predicted spike probability")
    spikes = np.nonzero(t["spike_true"] > 0)[0]
    axes[2].vlines(spikes, 0, 1, colors="k", lw=0.8, label="true spikes")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_ylabel("spike")
    axes[2].set_xlabel("time (ms)")
    axes[2].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def read_csv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]} if rows else {}


def plot_curves(args):
    train = read_csv(args.train_csv)
    valid = read_csv(args.valid_csv) if args.valid_csv else {}
    fig, axes = plt.subplots(1, 3 if valid else 1, figsize=(14 if valid else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot(train["step"], train["loss"], lw=0.6, alpha=0.5, label="batch loss")
        k = max(1, len(train["loss"]) // 50)
        smooth = np.convolve(train["loss"], np.ones(k) / k, mode="valid")
        ax.plot(train["step"][k - 1:], smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if valid:
        for ax, key, label in ((axes[0][1], "AUC", "validation spike AUC"),
                               (axes[0][2], "soma_RMSE", "validation soma RMSE (mV)")):
            if key in valid:
                ax.plot(valid["epoch"], valid[key], "o-")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def plot_scaling(args):
    with open(args.csv) as f:
        rows = list(csv.DictReader(f))
    factors = [("batch", "batch size"), ("time", "sequence length (steps)"), ("num_memory", "memory units d_m"),
               ("num_synapse", "synapses (45 branches)")]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for col, (factor, label) in enumerate(factors):
        pts = [r for r in rows if r["factor"] == factor]
        x = np.array([float(r["value"]) for r in pts])
        for row, (key, what) in enumerate((("ms", "time per call (ms)"), ("ns_per_sample_step", "ns per sample-step"))):
            ax = axes[row][col]
            for mode, style in (("inference", "o-"), ("train_step" if key == "ms" else "train", "s-")):
                name = f"{mode}_{key}"
                if name not in pts[0]:
                    continue
                ax.plot(x, [float(r[name]) for r in pts], style, label=mode.replace("_", " "))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(what)
            ax.grid(alpha=0.3, which="both")
            if row == 0 and col == 0:
                ax.legend()
    threads = max(int(r["threads"]) for r in rows)
    fig.suptitle("elmneuron cost around the NeuronIO Branch-ELM shape (d_m 15, 45x100 synapses, batch 32, 500 steps; "
                 f"up to {threads} threads, one per sample at most)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("roc")
    r.add_argument("--csv", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--title")
    t = sub.add_parser("traces")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--title")
    sc = sub.add_parser("scaling")
    sc.add_argument("--csv", required=True)
    sc.add_argument("--out", required=True)
    c = sub.add_parser("curves")
    c.add_argument("--train-csv", required=True)
    c.add_argument("--valid-csv")
    c.add_argument("--out", required=True)
    args = p.parse_args()
    {"roc": plot_roc, "traces": plot_traces, "curves": plot_curves, "scaling": plot_scaling}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
