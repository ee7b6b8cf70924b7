// Google Benchmark: inference, forward+backward and full train step (forward + backward + Adam) on the
// performance issue's reference shapes (elm::reference_shapes, timed as `elmneuron bench` times them:
// elm::benchmark_case), and one-step streaming at the NeuronIO d_m 15 shape. Counters: sample_steps/s and ns
// per sample-step. With --peer, the PyTorch peer (bench/peer_pytorch.py, the published model run the way the
// published code runs it) times each shape in this process's run, right before our first benchmark of that
// shape, at its best with at most our number of threads; counters peer_ms (its time per call) and
// peer_over_ours (its time / ours per call). Results in bench/README.md.
//   build/bench/bench_model --benchmark_counters_tabular=true [--threads=N] [--peer]
//     [--peer_python=P] [--peer_script=S] [--published_code=DIR] [--peer_repeats=R] [--peer_warmup=W]

#include <elmneuron/benchmark.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

using json = nlohmann::json;

void set_rate_counters(benchmark::State& state, double sample_steps) {
    state.counters["sample_steps/s"] =
        benchmark::Counter(sample_steps, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["ns/sample_step"] = benchmark::Counter(
        sample_steps * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// The peer, if --peer: its answer per shape, asked once (by the first benchmark of the shape).
struct peer_state {
    std::optional<elm::peer_options> options;
    std::map<std::string, json> answers;

    // The peer's answer for `shape`: its three times, or an error message in answer["error"].
    const json& answer(const elm::benchmark_shape& shape) {
        auto it = answers.find(shape.name);
        if (it != answers.end()) return it->second;
        std::fprintf(stderr, "peer: %s ...\n", shape.name.c_str());
        json a;
        try {
            a = json::parse(elm::run_peer(shape, *options));  // with every time, or an "error"
        } catch (const std::exception& e) {
            a = {{"error", e.what()}};
        }
        return answers.emplace(shape.name, std::move(a)).first->second;
    }
};
peer_state peer;

// One measurement of a shape. With the peer: peer_ms, its time per call, and peer_over_ours, a rate counter
// of the peer's seconds per call, i.e. its seconds x iterations / our real time: the ratio per call.
void bm_shape(benchmark::State& state, const elm::benchmark_shape& s, elm::measurement what) {
    const json* answer = nullptr;
    if (peer.options) {  // before the timed loop: not part of our time
        answer = &peer.answer(s);
        if (answer->contains("error")) {
            state.SkipWithError(("peer: " + (*answer)["error"].get<std::string>()).c_str());
            return;
        }
    }
    elm::benchmark_case c(s);
    for (auto _ : state) {
        c.run(what);
        benchmark::ClobberMemory();
    }
    set_rate_counters(state, double(s.batch) * s.time);
    state.counters["threads"] = elm::num_threads();
    if (answer) {
        const double ms = (*answer)[elm::peer_time_key(what)].get<double>();
        state.counters["peer_ms"] = benchmark::Counter(ms);
        state.counters["peer_over_ours"] =
            benchmark::Counter(ms * 1e-3, benchmark::Counter::kIsIterationInvariantRate);
    }
}

// One sample, one step per call (elm::stream), one thread; the published code has no such interface, so no
// peer.
void bm_stream_step(benchmark::State& state) {
    const auto s = elm::reference_shapes().front();
    elm::model<float> m(s.config, 1);
    const auto x = elm::synthetic_input<float>(s.input_kind, 1, 4096, s.config.num_input, 3);
    elm::stream<float> st(m, 1);
    std::vector<float> y(static_cast<std::size_t>(s.config.num_output));
    int t = 0;
    for (auto _ : state) {
        st.step(x, t, y);
        benchmark::DoNotOptimize(y.data());
        if (++t == x.time) t = 0;
    }
    set_rate_counters(state, 1);
}

int non_negative(const std::string& flag, const std::string& v) {
    std::size_t used = 0;
    int n = -1;
    try {
        n = std::stoi(v, &used);
    } catch (const std::exception&) {
    }
    if (used != v.size() || n < 0)
        throw elm::error("bench_model", flag, "a non-negative integer", "'" + v + "'");
    return n;
}

// Our flags (Google Benchmark's are gone from argv by then). Throws elm::error on an unknown or incomplete
// one, and on peer settings without --peer. With `listing` (nothing will be measured) the peer is not run.
void parse_flags(int argc, char** argv, bool listing) {
    bool want_peer = false;
    std::vector<std::string> peer_settings;
    elm::peer_options o;
    o.flags = {"bench_model", "--peer", "--peer_python", "--peer_script", "--published_code"};
    o.python = elm::default_peer_python();
    std::string script;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto eq = arg.find('=');
        const std::string name = arg.substr(0, eq), value = eq == std::string::npos ? "" : arg.substr(eq + 1);
        const bool has_value = eq != std::string::npos;
        if (name.rfind("--peer_", 0) == 0 || name == "--published_code") peer_settings.push_back(name);
        if (name == "--peer" && !has_value)
            want_peer = true;
        else if (name == "--threads" && has_value)
            elm::set_num_threads(non_negative(name, value));
        else if (name == "--peer_python" && !value.empty())
            o.python = value;
        else if (name == "--peer_script" && !value.empty())
            script = value;
        else if (name == "--published_code" && has_value)
            o.published_code = elm::published_code_folder(value, o.flags);
        else if (name == "--peer_repeats" && has_value)
            o.repeats = non_negative(name, value);
        else if (name == "--peer_warmup" && has_value)
            o.warmup = non_negative(name, value);
        else
            throw elm::error(
                "bench_model", arg,
                "a Google Benchmark flag or --threads=N, --peer, --peer_python=P, --peer_script=S, "
                "--published_code=DIR, --peer_repeats=R, --peer_warmup=W",
                "an unknown flag or one without its value");
    }
    if (!want_peer) {
        if (!peer_settings.empty())
            throw elm::error("bench_model", peer_settings.front(), "--peer with it", "no --peer");
        return;
    }
    o.script = elm::locate_peer_script(script, o.flags);
    o.threads = elm::num_threads();
    if (listing) return;
    // Asked now, before any measurement: a peer that cannot run (no torch, a checkout it cannot import)
    // fails here, and its BLAS goes into the report's context.
    const auto peak = elm::run_peer_sgemm_peak(o);
    benchmark::AddCustomContext(
        "peer",
        (o.published_code.empty() ? "bench/peer_pytorch.py's re-implementation of the published code ("
                                  : "the published code itself (" + o.published_code + ", run by ") +
            o.script + ") at its best with at most " + std::to_string(o.threads) + " threads");
    benchmark::AddCustomContext("peer_blas", peak.blas);
    benchmark::AddCustomContext("peer_sgemm_gflops_one_thread", std::to_string(peak.gflops));
    peer.options = o;
}

// --help: Google Benchmark's flags, then ours.
void print_help() {
    benchmark::PrintDefaultHelp();
    std::fprintf(
        stdout,
        "\nelmneuron flags:\n"
        "  [--threads=<n>]           threads of ours (default: all cores)\n"
        "  [--peer]                  also time the PyTorch peer (bench/peer_pytorch.py) on each shape:\n"
        "                            counters peer_ms and peer_over_ours (its time / ours per call)\n"
        "  [--peer_python=<path>]    the peer's Python, with torch (default: /usr/bin/python3)\n"
        "  [--peer_script=<path>]    peer_pytorch.py (default: $ELM_PEER_SCRIPT, else the source tree)\n"
        "  [--published_code=<dir>]  time the published code itself (a checkout of "
        "AaronSpieler/elmneuron)\n"
        "  [--peer_repeats=<n>]      timed peer calls per measurement (default: 3, 1 over 1000 steps)\n"
        "  [--peer_warmup=<n>]       untimed peer calls before them (default: 2)\n");
}

}  // namespace

// Google Benchmark's --benchmark_list_tests as it read it (flag or BENCHMARK_LIST_TESTS): exported by the
// library (1.7 and later) though not declared in its header.
namespace benchmark {
extern bool FLAGS_benchmark_list_tests;
}

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv, print_help);
    try {
        parse_flags(argc, argv, benchmark::FLAGS_benchmark_list_tests);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
    }
    benchmark::AddCustomContext("elmneuron_threads", std::to_string(elm::num_threads()));
    for (const auto& s : elm::reference_shapes())
        for (const auto what : elm::all_measurements)
            benchmark::RegisterBenchmark(
                ("bm_" + std::string(elm::measurement_name(what)) + "/" + s.name).c_str(),
                [s, what](benchmark::State& st) { bm_shape(st, s, what); })
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
    benchmark::RegisterBenchmark("bm_stream_step/streaming_single_sample_dm15", bm_stream_step)
        ->Unit(benchmark::kNanosecond);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
