#pragma once
// What speed measurements need besides the model (elmneuron bench, bench/bench_model): the reference shapes,
// synthetic inputs with the statistics of the published data, the per-step MLP FLOP count that defines the
// machine limit, the measured single-core sgemm and FMA peaks of this machine, and the PyTorch peer
// (bench/peer_pytorch.py) that both programs time side by side with ours.

#include <elmneuron/config.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/optim.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace elm {

// The published NeuronIO Branch-ELM (reference/paper.md §3.1): 1278 inputs, 2 outputs, 45 branches x 100
// synapses with NeuronIO routing, τ_m in [1, 150] ms, the given number of memory units.
model_config neuronio_branch_elm_config(int num_memory);

// A shape to time: a fresh model (seed 1) of `config` on `batch` x `time` steps of synthetic input.
struct benchmark_shape {
    std::string name;
    model_config config;
    int batch = 0, time = 0;
    std::string input_kind;                     // synthetic_input's kinds
    double target_train = 0, target_infer = 0;  // the performance issue's ratios against the peer (0: none)
    std::optional<double> input_rate{};         // events per channel and step (default: the kind's)
};

// The performance issue's shapes (bench/README.md): NeuronIO Branch-ELM d_m 15 and 100 (batch 32, 500
// steps), SHD vanilla ELM d_m 100 (batch 32, 250 steps of 700 spike counts) and a long sequence (d_m 100,
// batch 16, 4096 steps of one-hot 16 inputs).
std::vector<benchmark_shape> reference_shapes();

// The three timed calls of a shape (both programs time them the same way, benchmark_case).
enum class measurement { inference, forward_backward, train_step };
inline constexpr measurement all_measurements[] = {measurement::inference, measurement::forward_backward,
                                                   measurement::train_step};
// "inference", "forward_backward", "train_step".
const char* measurement_name(measurement m);

// What elmneuron bench and bench_model time on a shape: the model (a fresh one, seed 1, or a copy of
// `trained`), the shape's synthetic input (seed 2), d loss/d y = 1e-3 everywhere and Adam at lr 1e-4 (train
// steps change the copy's parameters). Each method is one call.
class benchmark_case {
public:
    explicit benchmark_case(const benchmark_shape& shape, const model<float>* trained = nullptr);
    void infer();             // model::infer (keeps nothing for a backward)
    void forward();           // model::forward (keeps the activations)
    void forward_backward();  // forward, zeroed gradient, backward
    void train_step();        // forward_backward, then one Adam step
    void run(measurement m);
    const sparse_input<float>& input() const { return input_; }
    const workspace<float>& train_workspace() const { return workspace_; }  // of forward and the backward

private:
    model<float> model_;
    sparse_input<float> input_;
    std::vector<float> y_, dy_, grad_;
    workspace<float> workspace_, infer_workspace_;
    optimizer<float> optimizer_;
};

// The PyTorch peer: bench/peer_pytorch.py (the published model run the way the published code runs it, or
// with published_code that code itself) in a child process, at its best with at most `threads` threads.

// How the calling program spells its peer settings, for its error messages.
struct peer_flag_names {
    std::string program = "bench";  // elmneuron bench's
    std::string peer = "--peer", python = "--peer-python", script = "--peer-script",
                published_code = "--published-code";
};

struct peer_options {
    std::string python;          // interpreter with torch
    std::string script;          // peer_pytorch.py (locate_peer_script)
    std::string published_code;  // a checkout of the published code to time instead of the script's model
    int threads = 1;
    int repeats = 0;  // timed calls per measurement; 0: 3, or 1 for sequences over 1000 steps
    int warmup = 2;   // untimed calls before them
    peer_flag_names flags;
};

// The peer script: `given` if not empty, else $ELM_PEER_SCRIPT, else bench/peer_pytorch.py of the source tree
// the library was built from, else next to or above the running executable. Throws elm::error naming what it
// tried.
std::string locate_peer_script(const std::string& given, const peer_flag_names& flags = {});

// /usr/bin/python3 (Debian's python3-torch) if it exists, else python3 from PATH.
std::string default_peer_python();

// The folder given as a checkout of the published code, absolute; throws elm::error (flags.published_code)
// if it is not a folder.
std::string published_code_folder(const std::string& given, const peer_flag_names& flags = {});

// The peer's key of each measurement's time in its answer (bench/peer_pytorch.py): forward_ms,
// forward_backward_ms, train_step_ms.
const char* peer_time_key(measurement m);

// The peer's times of one shape (its inference, forward+backward and train step at its best, the
// configurations it tried, its torch and BLAS): the script's JSON answer as text. An answer for the shape
// with an "error" text instead of the times says that the peer failed on it; any other answer has every
// measurement's time (peer_time_key) as a non-negative number. Throws elm::error if the peer gives no answer
// at all, or one without those times.
std::string run_peer(const benchmark_shape& shape, const peer_options& options);

// The single-thread sgemm peak of the peer's BLAS (torch.mm) and the BLAS's one-line summary; with
// options.published_code the script first checks that checkout (its layout, its import). Throws elm::error
// if the peer gives no answer.
struct peer_sgemm_peak {
    double gflops = 0;
    std::string blas;
};
peer_sgemm_peak run_peer_sgemm_peak(const peer_options& options);

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
