// Synthetic inputs and machine peaks for speed measurements (include/elmneuron/benchmark.hpp).

#include <elmneuron/benchmark.hpp>
#include <elmneuron/error.hpp>

#include "model/simd.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <limits>
#include <random>

namespace elm {

model_config neuronio_branch_elm_config(int num_memory) {
    model_config c;
    c.num_input = 1278;
    c.num_output = 2;
    c.num_memory = num_memory;
    c.num_branch = 45;
    c.num_synapse_per_branch = 100;
    c.input_to_synapse_routing = routing::neuronio;
    c.memory_tau_max = 150;
    return c;
}

std::vector<benchmark_shape> reference_shapes() {
    std::vector<benchmark_shape> s;
    s.push_back({"neuronio_branch_elm_dm15", neuronio_branch_elm_config(15), 32, 500, "neuronio", 50, 100});
    s.push_back({"neuronio_branch_elm_dm100", neuronio_branch_elm_config(100), 32, 500, "neuronio", 30, 50});
    model_config shd;
    shd.num_input = 700;
    shd.num_output = 20;
    shd.num_memory = 100;
    shd.delta_t = 4;
    s.push_back({"shd_vanilla_elm_dm100", shd, 32, 250, "counts", 10, 10});
    model_config longseq;
    longseq.num_input = 16;
    longseq.num_output = 10;
    longseq.num_memory = 100;
    s.push_back({"long_sequence_onehot_dm100", longseq, 16, 4096, "onehot", 10, 10});
    return s;
}

namespace {
// Per measurement (in enum order): our name and the peer's key of its time (bench/peer_pytorch.py).
struct measurement_names {
    const char* ours;
    const char* peer;
};
constexpr measurement_names names_of[] = {{"inference", "forward_ms"},
                                          {"forward_backward", "forward_backward_ms"},
                                          {"train_step", "train_step_ms"}};
}  // namespace

const char* measurement_name(measurement m) { return names_of[static_cast<int>(m)].ours; }
const char* peer_time_key(measurement m) { return names_of[static_cast<int>(m)].peer; }

namespace {
// torch.optim.Adam at lr 1e-4, as the peer's train step (bench/peer_pytorch.py).
optimizer_config benchmark_adam() {
    optimizer_config c;
    c.kind = optimizer_kind::adam;
    c.lr = 1e-4;
    return c;
}
}  // namespace

benchmark_case::benchmark_case(const benchmark_shape& s, const model<float>* trained)
    : model_(trained ? *trained : model<float>(s.config, 1)),
      input_(synthetic_input<float>(s.input_kind, s.batch, s.time, s.config.num_input, 2, s.input_rate)),
      y_(static_cast<std::size_t>(s.batch) * s.time * s.config.num_output),
      dy_(y_.size(), 1e-3f),
      grad_(model_.parameters().size()),
      optimizer_(benchmark_adam(), grad_.size()) {}

void benchmark_case::infer() { model_.infer(input_, y_, infer_workspace_); }
void benchmark_case::forward() { model_.forward(input_, y_, workspace_); }
void benchmark_case::forward_backward() {
    model_.forward(input_, y_, workspace_);
    std::fill(grad_.begin(), grad_.end(), 0.f);
    model_.backward(input_, dy_, workspace_, grad_);
}
void benchmark_case::train_step() {
    forward_backward();
    optimizer_.step(model_.parameters(), grad_, model_.trainable_mask(), optimizer_.config().lr);
}
void benchmark_case::run(measurement m) {
    switch (m) {
        case measurement::inference:
            return infer();
        case measurement::forward_backward:
            return forward_backward();
        case measurement::train_step:
            return train_step();
    }
}

double synthetic_event_rate(const std::string& kind, int num_input, std::optional<double> event_rate) {
    if (kind != "neuronio" && kind != "counts" && kind != "onehot")
        throw error("synthetic input", "kind", "neuronio, counts or onehot", "'" + kind + "'");
    if (kind == "onehot") {
        if (event_rate)
            throw error("synthetic input", "event rate", "none for onehot input (one event per step)",
                        std::to_string(*event_rate));
        return 1.0 / std::max(num_input, 1);
    }
    if (!event_rate) return kind == "neuronio" ? 0.02 : 0.03;
    if (!(*event_rate >= 0 && *event_rate <= 1))  // also rejects NaN
        throw error("synthetic input", "event rate", "a chance per channel and step in [0, 1]",
                    std::to_string(*event_rate));
    return *event_rate;
}

template <class T>
sparse_input<T> synthetic_input(const std::string& kind, int batch, int time, int num_input,
                                std::uint64_t seed, std::optional<double> event_rate) {
    const double rate = synthetic_event_rate(kind, num_input, event_rate);
    if (batch < 1 || time < 1 || num_input < 1)
        throw error("synthetic input", "shape", "positive batch, time and num_input",
                    std::to_string(batch) + " x " + std::to_string(time) + " x " + std::to_string(num_input));
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> u(0, 1);
    sparse_input<T> x;
    x.batch = batch;
    x.time = time;
    x.num_input = num_input;
    x.offsets.reserve(static_cast<std::size_t>(batch) * time + 1);
    x.offsets.push_back(0);
    for (std::int64_t r = 0; r < static_cast<std::int64_t>(batch) * time; ++r) {
        if (kind == "onehot") {
            x.channels.push_back(static_cast<std::int32_t>(gen() % static_cast<std::uint64_t>(num_input)));
            x.values.push_back(T(1));
        } else {
            for (int c = 0; c < num_input; ++c)
                if (u(gen) < rate) {
                    x.channels.push_back(c);
                    x.values.push_back(kind == "neuronio" ? T(c < num_input / 2 ? 1 : -1)
                                                          : T(1 + (u(gen) < 0.1)));
                }
        }
        x.offsets.push_back(static_cast<std::int64_t>(x.values.size()));
    }
    return x;
}

double mlp_flops_per_sample_step(const model_config& c) {
    const double d_tree = c.branches(), d_m = c.num_memory, d_mlp = c.hidden_size(), L = c.mlp_num_layers;
    const double n0 = L > 0 ? d_mlp : d_m;
    return 2.0 * ((d_tree + d_m) * n0 + std::max(0.0, L - 1) * d_mlp * d_mlp + (L > 0 ? d_mlp * d_m : 0.0));
}

double measure_sgemm_gflops(int n, int repeats) {
    const Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n);
    Eigen::MatrixXf c(n, n);
    c.noalias() = a * b;  // warm-up
    double best = std::numeric_limits<double>::infinity();
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        c.noalias() = a * b;
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    volatile float sink = c(0, 0);
    (void)sink;
    return 2.0 * n * n * static_cast<double>(n) / best / 1e9;
}

double measure_fma_gflops() {
    using V = detail::vec<float>;
    constexpr int chains = 12;  // independent accumulators: enough to cover the FMA latency
    V acc[chains];
    for (int i = 0; i < chains; ++i) acc[i] = V{} + 1.0f + static_cast<float>(i) * 1e-3f;
    const V mul = V{} + 0.999999f, add = V{} + 1e-7f;
    constexpr long iterations = 20'000'000;
    const auto t0 = std::chrono::steady_clock::now();
    for (long n = 0; n < iterations; ++n)
#pragma GCC unroll 12
        for (int i = 0; i < chains; ++i) acc[i] = acc[i] * mul + add;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    float sum = 0;
    for (int i = 0; i < chains; ++i) sum += detail::horizontal_sum<float>(acc[i]);
    volatile float sink = sum;
    (void)sink;
    return static_cast<double>(iterations) * chains * 2.0 * detail::lanes<float> / s / 1e9;
}

template sparse_input<float> synthetic_input<float>(const std::string&, int, int, int, std::uint64_t,
                                                    std::optional<double>);
template sparse_input<double> synthetic_input<double>(const std::string&, int, int, int, std::uint64_t,
                                                      std::optional<double>);

}  // namespace elm
