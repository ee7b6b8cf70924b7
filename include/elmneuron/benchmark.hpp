#pragma once
// What speed measurements need besides the model (elmneuron bench, bench/bench_model): synthetic inputs with
// the statistics of the published data, the per-step MLP FLOP count that defines the machine limit, and the
// measured single-core sgemm and FMA peaks of this machine.

#include <elmneuron/config.hpp>
#include <elmneuron/model.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace elm {

// The published NeuronIO Branch-ELM (reference/paper.md §3.1): 1278 inputs, 2 outputs, 45 branches x 100
// synapses with NeuronIO routing, τ_m in [1, 150] ms, the given number of memory units.
model_config neuronio_branch_elm_config(int num_memory);

// "neuronio": 2 % events, +1 on the first (excitatory) half of the channels, -1 on the second;
// "counts": SHD-like spike counts, 3 % events of value 1 (90 %) or 2; "onehot": one channel per step.
// event_rate replaces the 2 % / 3 % (the chance of an event per channel and step, in [0, 1]; not for
// "onehot"). Throws elm::error for another kind or a bad rate.
template <class T>
sparse_input<T> synthetic_input(const std::string& kind, int batch, int time, int num_input,
                                std::uint64_t seed, std::optional<double> event_rate = std::nullopt);

// The event rate synthetic_input uses for a kind when none is given (0.02 neuronio, 0.03 counts, 1/num_input
// onehot); throws elm::error for a rate it would reject.
double synthetic_event_rate(const std::string& kind, int num_input, std::optional<double> event_rate);

// FLOPs per sample-step of the per-step MLP on [branch activations, memory] (reference/paper.md §1.2):
// 2·((d_tree + d_m)·n0 + (l_mlp - 1)·d_mlp² + d_mlp·d_m) with n0 = d_mlp (l_mlp > 0) or d_m. The irreducible
// recurrent work of a forward step; the "machine limit" is this at the sgemm peak.
double mlp_flops_per_sample_step(const model_config& config);

// GFLOP/s of one thread: Eigen's sgemm on n x n float32 matrices (best of `repeats`), and independent SIMD
// FMAs in registers with the model kernels' vector type (the arithmetic peak).
double measure_sgemm_gflops(int n = 2048, int repeats = 3);
double measure_fma_gflops();

}  // namespace elm
