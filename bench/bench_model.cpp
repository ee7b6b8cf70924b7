// Google Benchmark: time per sample-step of inference, forward (keeping activations), forward+backward and
// one-step streaming at the NeuronIO Branch-ELM shape (d_m given, 45 x 100 synapses, NeuronIO routing, batch
// 32, 500 steps, 1278 inputs with ~2 % events in {-1, +1}). Counters: sample_steps/s and ns per sample-step.
// Results in bench/README.md.
//   build/bench/bench_model --benchmark_counters_tabular=true

#include <elmneuron/benchmark.hpp>
#include <elmneuron/model.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

constexpr int batch = 32, steps = 500;

void set_counters(benchmark::State& state, double sample_steps) {
    state.counters["sample_steps/s"] =
        benchmark::Counter(sample_steps, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["ns/sample_step"] = benchmark::Counter(
        sample_steps * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

struct fixture {
    explicit fixture(int d_m)
        : m(elm::neuronio_branch_elm_config(d_m), 1),
          x(elm::synthetic_input<float>("neuronio", batch, steps, 1278, 42)),
          y(static_cast<std::size_t>(batch) * steps * 2),
          dy(y.size(), 1e-3f),
          g(m.parameters().size()) {}
    elm::model<float> m;
    elm::sparse_input<float> x;
    std::vector<float> y, dy, g;
    elm::workspace<float> ws;
};

void bm_inference(benchmark::State& state) {
    fixture f(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        f.m.infer(f.x, f.y, f.ws);
        benchmark::DoNotOptimize(f.y.data());
    }
    set_counters(state, double(batch) * steps);
}

void bm_forward(benchmark::State& state) {
    fixture f(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        f.m.forward(f.x, f.y, f.ws);
        benchmark::DoNotOptimize(f.y.data());
    }
    set_counters(state, double(batch) * steps);
}

void bm_forward_backward(benchmark::State& state) {
    fixture f(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        f.m.forward(f.x, f.y, f.ws);
        std::fill(f.g.begin(), f.g.end(), 0.f);
        f.m.backward(f.x, f.dy, f.ws, f.g);
        benchmark::DoNotOptimize(f.g.data());
    }
    set_counters(state, double(batch) * steps);
}

// One sample, one step per call (elm::stream), one thread.
void bm_stream_step(benchmark::State& state) {
    elm::model<float> m(elm::neuronio_branch_elm_config(static_cast<int>(state.range(0))), 1);
    const auto x = elm::synthetic_input<float>("neuronio", 1, 4096, 1278, 7);
    elm::stream<float> s(m, 1);
    std::vector<float> y(2);
    int t = 0;
    for (auto _ : state) {
        s.step(x, t, y);
        benchmark::DoNotOptimize(y.data());
        if (++t == x.time) t = 0;
    }
    set_counters(state, 1);
}

}  // namespace

BENCHMARK(bm_inference)->Arg(15)->Arg(20)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_forward)->Arg(15)->Arg(20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_forward_backward)->Arg(15)->Arg(20)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_stream_step)->Arg(15)->Unit(benchmark::kNanosecond);
BENCHMARK_MAIN();
