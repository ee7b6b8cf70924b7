#!/usr/bin/env python3
"""Median and range over several `elmneuron bench --peer --json F` runs, per shape and thread count.

The README's speed table is the median of five whole runs: the peer's times move by tens of per cent from run to
run on a shared machine, so one run is not a number to quote. Usage:

    for r in 1 2 3 4 5; do build/elmneuron bench --peer --threads 1 --json runs/t1_$r.json; done
    python3 bench/summarize_runs.py runs/*.json            # a Markdown table on stdout
    python3 bench/summarize_runs.py --json out.json runs/*.json

The streaming measurement always runs on one thread, so it is one row over all the files given.
Runs against different peers (`--published-code`: the published code itself, or peer_pytorch.py's
re-implementation; `machine.peer.peer_code`) are never pooled: each peer gets its own rows, labelled.
Only the standard library: it runs wherever the bench does.
"""

import argparse
import json
import os
import statistics
import sys


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"summarize_runs: {path}: cannot read a bench JSON file ({e})")
    if not isinstance(data, dict) or "results" not in data or "machine" not in data:
        sys.exit(f"summarize_runs: {path}: field 'results'/'machine' missing: expected `elmneuron bench --json` output")
    return data


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def peer_configuration(result, peer_name):
    """"2 openblas-openmp": the peer configuration (threads, BLAS build) its time came from (`fastest` of
    bench_at_its_best in peer_pytorch.py), or None."""
    c = result.get("peer", {}).get("fastest", {}).get(peer_name)
    return f"{c['threads']} {c['blas']}" if c else None


def most_common(values):
    """The most frequent value and how many runs had it ("2 openblas-openmp (4 of 5)"), or None."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    top = max(sorted(set(values)), key=values.count)
    return f"{top} ({values.count(top)} of {len(values)})" if values.count(top) < len(values) else top


def peer_label(data):
    """What a run's peer was: "published code (folder @ commit)", "re-implementation" (also for runs from
    before peer_code was reported, which always ran it), or "no peer"."""
    peer = data["machine"].get("peer")
    if not peer:
        return "no peer"
    code = peer.get("peer_code") or {"kind": "re-implementation"}
    if code.get("kind") != "published":
        return "re-implementation"
    commit = code.get("git_commit")
    return f"published code ({code.get('folder', '?')}" + (f" @ {commit[:12]})" if commit else ")")


def summarize(runs):
    """{(shape, threads, peer label): {quantity: stats}} over the runs."""
    groups = {}
    for path, data in runs:
        label = peer_label(data)
        for r in data["results"]:
            if "shape" not in r or "threads" not in r:
                sys.exit(f"summarize_runs: {path}: a result without 'shape'/'threads'")
            # Streaming has no peer: its runs pool whatever the peer of the rest was.
            groups.setdefault((r["shape"], r["threads"], "" if "steps_per_s" in r else label), []).append(r)
    out = {}
    for key, rs in groups.items():
        q = {}
        if "steps_per_s" in rs[0]:  # streaming
            q["steps_per_s"] = stats([r.get("steps_per_s") for r in rs])
        else:
            for name in ("inference_ms", "train_step_ms", "forward_backward_ms"):
                q["ours_" + name] = stats([r.get(name) for r in rs])
            for name in ("inference", "train_step", "forward_backward"):
                q["ratio_" + name] = stats([r.get("peer_over_ours", {}).get(name) for r in rs])
                q["bound_" + name] = stats([r.get("best_possible_ratio_at_fma_peak", {}).get(name) for r in rs])
            for name, peer_name in (("inference_ms", "forward_ms"), ("train_step_ms", "train_step_ms"),
                                    ("forward_backward_ms", "forward_backward_ms")):
                q["peer_" + name] = stats([r.get("peer", {}).get(peer_name) for r in rs])
            for name, peer_name in (("inference", "forward_ms"), ("train_step", "train_step_ms")):
                q["peer_run_as_" + name] = most_common([peer_configuration(r, peer_name) for r in rs])
            q["limit_fraction_inference"] = stats([r.get("fraction_of_limit_inference") for r in rs])
            q["limit_fraction_train"] = stats([r.get("fraction_of_limit_train") for r in rs])
            q["target"] = rs[0].get("target")
        out[key] = q
    return out


def number(v):
    """Three significant digits, without an exponent (1049, 58.8, 0.637)."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def fmt(s, unit=""):
    return "–" if s is None else number(s["median"]) + unit


def fmt_range(s, unit="×"):
    if s is None:
        return "–"
    return f"{number(s['median'])}{unit} ({number(s['min'])}-{number(s['max'])}{unit})"


def table(summary):
    # The peer is named in the shape cell only when the runs had more than one.
    labelled = len({key[2] for key in summary if key[2]}) > 1
    lines = [
        "| shape | threads | inference ours / peer ms | ratio (range) | train step ours / peer ms | ratio (range) "
        "| bound (inf. / train) | limit % (inf. / train) | target (train / inf.) | peer run as (inf. / train) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (shape, threads, label), q in sorted(summary.items()):
        if labelled and label:
            shape = f"{shape} [peer: {label}]"
        if "steps_per_s" in q:
            lines.append(f"| {shape} | {threads} | {q['steps_per_s']['median'] / 1e6:.2f} M steps/s | | | | | | | |")
            continue
        target = q.get("target")  # none for a --config shape
        target_cell = f"{number(target['train_step'])}× / {number(target['inference'])}×" if target else "–"
        lf_i, lf_t = q["limit_fraction_inference"], q["limit_fraction_train"]
        lines.append(
            f"| {shape} | {threads} | {fmt(q['ours_inference_ms'])} / {fmt(q['peer_inference_ms'])} "
            f"| {fmt_range(q['ratio_inference'])} | {fmt(q['ours_train_step_ms'])} / {fmt(q['peer_train_step_ms'])} "
            f"| {fmt_range(q['ratio_train_step'])} | {fmt(q['bound_inference'], '×')} / {fmt(q['bound_train_step'], '×')} "
            f"| {100 * lf_i['median']:.0f} / {100 * lf_t['median']:.0f} "
            f"| {target_cell} "
            f"| {q['peer_run_as_inference'] or '–'} / {q['peer_run_as_train_step'] or '–'} |"
            if lf_i and lf_t else f"| {shape} | {threads} | incomplete results |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="JSON files of `elmneuron bench --json`")
    ap.add_argument("--json", help="also write the summary as JSON to this file (atomically)")
    args = ap.parse_args()
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            sys.exit(f"summarize_runs: {args.json}: field '--json': expected a file in an existing, writable folder")
    runs = [(p, load(p)) for p in args.files]
    summary = summarize(runs)
    peers = sorted({peer_label(data) for _, data in runs})
    print(f"{len(runs)} runs; machine: {runs[0][1]['machine'].get('cpu_model', '?')}, "
          f"peer BLAS: {runs[0][1]['machine'].get('peer', {}).get('blas', {}).get('summary', 'no peer')}; "
          f"peer: {' / '.join(peers)}")
    print(table(summary))
    if args.json:
        doc = [{"shape": s, "threads": t, "peer": label or None, **q} for (s, t, label), q in sorted(summary.items())]
        tmp = f"{args.json}.tmp-{os.getpid()}"  # beside the target, then renamed: never half-written
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
            os.replace(tmp, args.json)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


if __name__ == "__main__":
    main()
