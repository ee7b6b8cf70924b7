// Google Benchmark: forward and forward+backward time per sample-step at the NeuronIO Branch-ELM shape
// (d_m = 15 and 20, 45 x 100 synapses, NeuronIO routing, batch 32, 500 steps, 1278 inputs with ~2 % events
// in {-1, +1}). Counters: sample_steps/s (rate) and ns per sample-step. Results in bench/README.md.
//   build/bench/bench_model --benchmark_counters_tabular=true

#include <elmneuron/model.hpp>

#include <benchmark/benchmark.h>

#include <random>
#include <vector>

namespace {

elm::model_config neuronio_config(int num_memory) {
    elm::model_config c;
    c.num_input = 1278;
    c.num_output = 2;
    c.num_memory = num_memory;
    c.num_branch = 45;
    c.num_synapse_per_branch = 100;
    c.input_to_synapse_routing = elm::routing::neuronio;
    c.memory_tau_max = 150;
    return c;
}

elm::sparse_input<float> neuronio_input(int batch, int time) {
    std::mt19937_64 gen(42);
    std::uniform_real_distribution<double> u(0, 1);
    elm::sparse_input<float> x;
    x.batch = batch;
    x.time = time;
    x.num_input = 1278;
    x.offsets.push_back(0);
    for (int r = 0; r < batch * time; ++r) {
        for (int c = 0; c < 1278; ++c)
            if (u(gen) < 0.02) {
                x.channels.push_back(c);
                x.values.push_back(c < 639 ? 1.f : -1.f);
            }
        x.offsets.push_back(static_cast<std::int64_t>(x.values.size()));
    }
    return x;
}

void set_counters(benchmark::State& state, int batch, int time) {
    const double sample_steps = static_cast<double>(batch) * time;
    state.counters["sample_steps/s"] =
        benchmark::Counter(sample_steps, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["ns/sample_step"] = benchmark::Counter(
        sample_steps * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void bm_forward(benchmark::State& state) {
    const int d_m = static_cast<int>(state.range(0)), B = 32, T = 500;
    elm::model<float> m(neuronio_config(d_m), 1);
    const auto x = neuronio_input(B, T);
    std::vector<float> y(static_cast<std::size_t>(B) * T * 2);
    elm::workspace<float> ws;
    for (auto _ : state) {
        m.forward(x, y, ws);
        benchmark::DoNotOptimize(y.data());
    }
    set_counters(state, B, T);
}

void bm_forward_backward(benchmark::State& state) {
    const int d_m = static_cast<int>(state.range(0)), B = 32, T = 500;
    elm::model<float> m(neuronio_config(d_m), 1);
    const auto x = neuronio_input(B, T);
    std::vector<float> y(static_cast<std::size_t>(B) * T * 2), dy(y.size(), 1e-3f), g(m.parameters().size());
    elm::workspace<float> ws;
    for (auto _ : state) {
        m.forward(x, y, ws);
        std::fill(g.begin(), g.end(), 0.f);
        m.backward(x, dy, ws, g);
        benchmark::DoNotOptimize(g.data());
    }
    set_counters(state, B, T);
}

}  // namespace

BENCHMARK(bm_forward)->Arg(15)->Arg(20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_forward_backward)->Arg(15)->Arg(20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
