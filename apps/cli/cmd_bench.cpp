// elmneuron bench: inference, forward+backward and full train-step (fwd + bwd + Adam) time on the reference
// shapes of bench/README.md (or one given config), the fraction of the machine limit (per-step MLP FLOPs at
// the measured single-core sgemm peak), streaming steps/s, as a table and JSON. With --peer, runs the
// published PyTorch implementation (bench/peer_pytorch.py) on the same shapes at its best with at most the
// same number of threads (each of its times the fastest of 1, 2, 4, ... and that many threads and of the
// installed OpenBLAS builds) and reports ratios. With --scaling DIR, sweeps batch, sequence length, d_m and
// synapses and plots the cost.

#include <elmneuron/benchmark.hpp>
#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/optim.hpp>
#include <elmneuron/tensor_file.hpp>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"

#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace elm::cli {
namespace {

using json = nlohmann::json;

// A reference shape, or one from --config: a fresh model (seed 1), or a trained model's weights.
struct bench_shape : benchmark_shape {
    std::string weights{};  // a trained model's file or folder (load_model), or empty: a fresh model (seed 1)
    std::shared_ptr<const model<float>> trained{};  // that model, loaded once by custom_shape
};

constexpr const char* streaming_name = "streaming_single_sample_dm15";
constexpr double streaming_target = 1e6;  // steps/s per core

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// How often each measurement calls the code: at least `repeats` times and until `min_seconds` are timed, so
// that a short call is timed many times and a burst of other load on the machine moves few of the samples.
struct timing {
    int repeats = 5;
    double min_seconds = 0.3;
};
constexpr int max_timed_calls = 10000;

// Median seconds of the timed calls after one untimed warm-up (buffers allocated, caches warm); their number
// into *calls.
template <class F>
double time_median(F&& f, const timing& how, int* calls = nullptr) {
    f();
    std::vector<double> t;
    double total = 0;
    while (static_cast<int>(t.size()) < how.repeats ||
           (total < how.min_seconds && static_cast<int>(t.size()) < max_timed_calls)) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        total += t.back();
    }
    if (calls) *calls = static_cast<int>(t.size());
    return median(t);
}

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

struct machine_peak {
    double eigen_sgemm = 0, peer_sgemm = 0, fma = 0;
    // The limit uses the best sgemm measured on this machine (one thread).
    double sgemm() const { return std::max(eigen_sgemm, peer_sgemm); }
};

// The fraction of the hidden ReLU units that are on over a forward's steps (what sparse_rows skips; -1
// without hidden ReLU layers).
double relu_units_on(const model_config& c, const workspace<float>& ws) {
    if (c.mlp_num_layers == 0 || c.mlp_activation != activation::relu || ws.hidden.empty()) return -1;
    std::size_t on = 0;
    for (float v : ws.hidden) on += v > 0;  // padding elements are 0
    const double units = static_cast<double>(c.mlp_num_layers) * ws.batch * ws.time * c.hidden_size();
    return static_cast<double>(on) / units;
}

json bench_one(const bench_shape& s, const timing& how, const machine_peak& peak) {
    benchmark_case timed(s, s.trained.get());
    std::array<int, 4> calls{};
    const double infer = time_median([&] { timed.infer(); }, how, &calls[0]);
    const double fwd = time_median([&] { timed.forward(); }, how, &calls[1]);
    // Of the weights as given, before any train step.
    const double units_on = relu_units_on(s.config, timed.train_workspace());
    const double fwd_bwd = time_median([&] { timed.forward_backward(); }, how, &calls[2]);
    const double train = time_median([&] { timed.train_step(); }, how, &calls[3]);
    const auto& x = timed.input();
    const auto& ws = timed.train_workspace();
    const double sample_steps = static_cast<double>(s.batch) * s.time;
    const int threads = std::min(num_threads(), s.batch);  // a sample's steps are sequential
    // Machine limit (the definition): the per-step MLP FLOPs at the single-core sgemm peak, on the
    // threads used; a train step does that work three times (forward, input gradient, weight gradient).
    const double flops = mlp_flops_per_sample_step(s.config) * sample_steps;
    json r{{"shape", s.name},
           {"config", json::parse(to_json(s.config))},
           {"weights", s.weights.empty() ? json("fresh model, seed 1") : json(s.weights)},
           {"relu_units_on", units_on < 0 ? json(nullptr) : json(units_on)},
           {"batch", s.batch},
           {"time", s.time},
           {"input_kind", s.input_kind},
           {"input_rate", synthetic_event_rate(s.input_kind, s.config.num_input, s.input_rate)},
           {"num_memory", s.config.num_memory},
           {"input_events", x.num_events()},
           {"threads", threads},
           {"backward_threads", ws.backward_threads},  // more than the chunks with teams (docs/model.md)
           {"inference_ms", infer * 1e3},
           {"forward_ms", fwd * 1e3},
           {"forward_backward_ms", fwd_bwd * 1e3},
           {"train_step_ms", train * 1e3},
           {"inference_ms_per_step", infer * 1e3 / s.time},
           {"forward_backward_ms_per_step", fwd_bwd * 1e3 / s.time},
           {"train_ms_per_step", train * 1e3 / s.time},
           {"inference_sample_steps_per_s", sample_steps / infer},
           {"train_sample_steps_per_s", sample_steps / train},
           {"mlp_gflop_per_call", flops / 1e9},
           {"workspace_mb", static_cast<double>(ws.bytes()) / (1 << 20)},
           {"peak_rss_mb", peak_rss_mb()},
           {"timed_calls",
            {{"inference", calls[0]},
             {"forward", calls[1]},
             {"forward_backward", calls[2]},
             {"train_step", calls[3]}}}};
    // The arithmetic this implementation cannot avoid (unpadded): per step the memory half of layer 0, the
    // hidden and output layers and the readout, plus one row of U per input event; a train step does the
    // dense part three times and the input part twice. At the SIMD FMA peak this bounds any ratio.
    {
        const auto& c = s.config;
        const double dm = c.num_memory, dh = c.hidden_size(), L = c.mlp_num_layers, n0 = L > 0 ? dh : dm;
        const double dense =
            2.0 * (dm * n0 + std::max(0.0, L - 1) * dh * dh + (L > 0 ? dh * dm : 0.0) + dm * c.num_output);
        const double events = 2.0 * n0 * static_cast<double>(x.num_events());
        r["own_gflop_inference"] = (dense * sample_steps + events) / 1e9;
        r["own_gflop_train_step"] = (3 * dense * sample_steps + 2 * events) / 1e9;
        if (peak.fma > 0) {
            r["fma_bound_inference_ms"] = 1e3 * r["own_gflop_inference"].get<double>() / (peak.fma * threads);
            r["fma_bound_train_ms"] = 1e3 * r["own_gflop_train_step"].get<double>() / (peak.fma * threads);
        }
    }
    if (peak.sgemm() > 0) {
        const double limit_infer = flops / (peak.sgemm() * 1e9 * threads);
        r["limit_inference_ms"] = limit_infer * 1e3;
        r["limit_train_ms"] = 3 * limit_infer * 1e3;
        r["fraction_of_limit_inference"] = limit_infer / infer;
        r["fraction_of_limit_train"] = 3 * limit_infer / train;
    }
    if (s.target_train > 0) r["target"] = {{"train_step", s.target_train}, {"inference", s.target_infer}};
    return r;
}

// One sample, one step per call through elm::stream (state kept between calls), one thread.
json bench_streaming(int steps, const timing& how) {
    auto s = reference_shapes().front();
    model<float> m(s.config, 1);
    const auto x = synthetic_input<float>(s.input_kind, 1, steps, s.config.num_input, 3);
    stream<float> st(m, 1);
    std::vector<float> y(static_cast<std::size_t>(s.config.num_output));
    const double t = time_median(
        [&] {
            st.reset();
            for (int i = 0; i < steps; ++i) st.step(x, i, y);
        },
        how);
    return {{"shape", streaming_name},
            {"config", json::parse(to_json(s.config))},
            {"batch", 1},
            {"time", steps},
            {"threads", 1},
            {"api", "elm::stream::step, one call per time step"},
            {"stream_ms", t * 1e3},
            {"ns_per_step", t * 1e9 / steps},
            {"steps_per_s", steps / t},
            {"target", {{"steps_per_s", streaming_target}}}};
}

// ---- the machine -----------------------------------------------------------------------------------------

std::string read_text(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string trim(std::string v) {
    const auto b = v.find_first_not_of(" \t\n");
    const auto e = v.find_last_not_of(" \t\n");
    return b == std::string::npos ? std::string{} : v.substr(b, e - b + 1);
}

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("model name", 0) == 0) return trim(line.substr(line.find(':') + 1));
    return "unknown";
}

std::string load_average() { return trim(read_text("/proc/loadavg")); }

std::string compiler() {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "GCC " __VERSION__;
#else
    return "unknown";
#endif
}

json machine_info() {
    utsname u{};
    uname(&u);
    return {
        {"cpu_model", cpu_model()}, {"logical_cpus", std::thread::hardware_concurrency()},
            {"threads", num_threads()}, {"compiler", compiler()},
#ifdef NDEBUG
            {"assertions", false},
#else
            {"assertions", true},
#endif
#if defined(__AVX512F__)
            {"simd", "AVX-512"},
#elif defined(__AVX2__)
            {"simd", "AVX2"},
#else
            {"simd", "SSE2/portable"},
#endif
            {"kernel", std::string(u.sysname) + " " + u.release + " " + u.machine}, {
            "loadavg_start", load_average()
        }
    };
}

// Milliseconds with three significant digits (952, 17.1, 1.24, 0.0312; below 1e-4 ms in exponent form): a
// small --config shape is not shown as 0.0.
std::string fmt_ms(double ms) {
    char b[32];
    const double a = std::abs(ms);
    std::snprintf(b, sizeof b,
                  a >= 99.95    ? "%.0f"
                  : a >= 9.995  ? "%.1f"
                  : a >= 0.9995 ? "%.2f"
                                : "%#.3g",
                  ms);
    return b;
}

std::string fmt(const json& j, const char* key) {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return "-";
    return fmt_ms(j[key].get<double>());
}

std::string fmt_ratio(double ratio, double target) {
    char b[48];
    if (target > 0)
        std::snprintf(b, sizeof b, "%.1fx %s", ratio, ratio >= target ? "ok" : "LOW");
    else
        std::snprintf(b, sizeof b, "%.1fx", ratio);
    return b;
}

// The peer's answer beyond its times (bench/peer_pytorch.py: its torch, BLAS, thread counts, ...) describes
// the run; a peer script that leaves a field out, or gives it another type, gets "?" there.
const json& peer_field(const json& j, const char* key) {
    static const json none;
    if (!j.is_object()) return none;
    const auto it = j.find(key);
    return it != j.end() ? *it : none;
}
std::string peer_text(const json& j, const char* key) {
    const json& v = peer_field(j, key);
    return v.is_string() ? v.get<std::string>() : "?";
}
// A count (threads, parameters) as given, "?" if it is not a number.
std::string peer_count(const json& j, const char* key) {
    const json& v = peer_field(j, key);
    return v.is_number() ? v.dump() : "?";
}

const char* const peer_environment_keys[] = {
    "peer", "peer_code", "python",   "torch_version", "torch_num_interop_threads", "torch_parallel_backend",
    "blas", "env",       "cpu_count"};

// How the peer was run: "1", or, with several thread counts (peer_pytorch.py's bench_at_its_best: the peer at
// its best with at most --threads threads), the counts it tried.
std::string peer_thread_counts(const json& peer_env) {
    const json& counts = peer_field(peer_env, "thread_counts");
    if (!counts.is_array() || counts.size() <= 1) return peer_count(peer_env, "torch_num_threads");
    std::string list;
    for (const auto& c : counts) list += (list.empty() ? "" : ", ") + c.dump();
    return "at its best (the fastest of " + list +
           " threads and of the installed OpenBLAS builds, per measurement)";
}

// "2 openblas-openmp": the configuration a peer time came from.
std::string peer_configuration(const json& fastest, const char* key) {
    const json& c = peer_field(fastest, key);
    if (c.is_null()) return "-";
    return peer_count(c, "threads") + " " + peer_text(c, "blas");
}

void print_comparison(const json& results, const json& peer_env, int threads) {
    std::printf(
        "\nours vs the published PyTorch code (peer); ratio = peer time / our time (>1: ours faster); "
        "ok/LOW: against the performance issue's target\n");
    if (peer_env.is_object()) {
        std::printf("peer: %s\n", peer_text(peer_env, "peer").c_str());
        std::printf("threads: ours %d, peer %s; peer: torch %s, BLAS %s\n", threads,
                    peer_thread_counts(peer_env).c_str(), peer_text(peer_env, "torch_version").c_str(),
                    peer_text(peer_field(peer_env, "blas"), "summary").c_str());
    }
    std::printf("%-28s | %27s | %27s | %27s\n", "", "inference (peer: no_grad)", "forward + backward",
                "train step (+ Adam)");
    std::printf("%-28s | %7s %8s %10s | %7s %8s %10s | %7s %8s %10s\n", "shape (ms)", "ours", "peer", "ratio",
                "ours", "peer", "ratio", "ours", "peer", "ratio");
    for (const auto& r : results) {
        if (!r.contains("peer") || !r["peer"].is_object()) continue;
        const json& pr = r["peer"];
        if (pr.contains("error")) {
            std::printf("%-28s | peer failed: %s\n", r["shape"].get<std::string>().c_str(),
                        peer_text(pr, "error").c_str());
            continue;
        }
        const json target = r.value("target", json::object());
        const auto& ratio = r["peer_over_ours"];
        std::string row, run_as;  // a column per measurement; the peer's configuration behind each time
        for (const auto m : all_measurements) {
            const std::string name = measurement_name(m);
            char cell[512];
            std::snprintf(cell, sizeof cell, " | %7s %8s %10s", fmt(r, (name + "_ms").c_str()).c_str(),
                          fmt(pr, peer_time_key(m)).c_str(),
                          fmt_ratio(ratio[name], target.value(name, 0.0)).c_str());
            row += cell;
            std::snprintf(cell, sizeof cell, " | %27s",
                          peer_configuration(peer_field(pr, "fastest"), peer_time_key(m)).c_str());
            run_as += cell;
        }
        std::printf("%-28s%s\n", r["shape"].get<std::string>().c_str(), row.c_str());
        if (const json& counts = peer_field(pr, "thread_counts"); counts.is_array() && counts.size() > 1)
            std::printf("%-28s%s\n", "  peer run (threads, BLAS)", run_as.c_str());
        if (r.contains("best_possible_ratio_at_fma_peak")) {
            const auto& b = r["best_possible_ratio_at_fma_peak"];
            std::printf("%-28s | %27s | %27s | %27s\n", "  bound: ours at FMA peak",
                        fmt_ratio(b["inference"], 0).c_str(), "", fmt_ratio(b["train_step"], 0).c_str());
        }
    }
}

// ---- scaling sweep ---------------------------------------------------------------------------------------

// Cost of inference and of a train step around the NeuronIO d_m = 15 shape, one factor at a time.
json scaling_sweep(const timing& how, const std::string& out_dir) {
    namespace fs = std::filesystem;
    const bench_shape base{reference_shapes().front()};
    struct point {
        std::string factor;
        double value;
        bench_shape shape;
    };
    std::vector<point> points;
    for (int b : {1, 2, 4, 8, 16, 32, 64, 128}) {
        auto s = base;
        s.batch = b;
        points.push_back({"batch", double(b), s});
    }
    for (int t : {125, 250, 500, 1000, 2000, 4000}) {
        auto s = base;
        s.time = t;
        points.push_back({"time", double(t), s});
    }
    for (int dm : {1, 5, 10, 15, 20, 30, 50, 75, 100}) {
        auto s = base;
        s.config.num_memory = dm;
        points.push_back({"num_memory", double(dm), s});
    }
    // NeuronIO routing needs at least ceil(1278 / 45) = 29 synapses per branch.
    for (int k : {29, 50, 100, 200, 400}) {
        auto s = base;
        s.config.num_synapse_per_branch = k;
        points.push_back({"num_synapse", double(k * base.config.num_branch), s});
    }
    json rows = json::array();
    std::string csv =
        "factor,value,batch,time,num_memory,num_synapse,threads,inference_ms,train_step_ms,"
        "inference_ns_per_sample_step,train_ns_per_sample_step\n";
    progress bar("scaling", static_cast<std::int64_t>(points.size()), "points");
    std::int64_t done = 0;
    for (const auto& p : points) {
        const auto r = bench_one(p.shape, how, machine_peak{});
        const double ss = static_cast<double>(p.shape.batch) * p.shape.time;
        json row{{"factor", p.factor},
                 {"value", p.value},
                 {"batch", p.shape.batch},
                 {"time", p.shape.time},
                 {"num_memory", p.shape.config.num_memory},
                 {"num_synapse", p.shape.config.num_synapse()},
                 {"threads", r["threads"]},
                 {"inference_ms", r["inference_ms"]},
                 {"train_step_ms", r["train_step_ms"]},
                 {"inference_ns_per_sample_step", r["inference_ms"].get<double>() * 1e6 / ss},
                 {"train_ns_per_sample_step", r["train_step_ms"].get<double>() * 1e6 / ss}};
        char line[512];
        std::snprintf(
            line, sizeof line, "%s,%g,%d,%d,%d,%d,%d,%.6g,%.6g,%.6g,%.6g\n", p.factor.c_str(), p.value,
            p.shape.batch, p.shape.time, p.shape.config.num_memory, p.shape.config.num_synapse(),
            row["threads"].get<int>(), row["inference_ms"].get<double>(), row["train_step_ms"].get<double>(),
            row["inference_ns_per_sample_step"].get<double>(), row["train_ns_per_sample_step"].get<double>());
        csv += line;
        rows.push_back(std::move(row));
        ++done;
        bar.update(done, static_cast<double>(done));
    }
    bar.finish();
    const std::string csv_path = (fs::path(out_dir) / "scaling.csv").string();
    write_text_atomic(csv_path, csv);
    write_json_atomic((fs::path(out_dir) / "scaling.json").string(),
                      json{{"base", base.name}, {"points", rows}});
    make_plot({"scaling", "--csv", csv_path, "--out", (fs::path(out_dir) / "scaling.png").string()});
    std::printf("scaling: %zu points -> %s/scaling.{csv,json,png}\n", points.size(), out_dir.c_str());
    return rows;
}

// A trained model given to --config: a published model folder, a .pt state dict or an elmneuron
// .safetensors file (load_model's kinds).
bool is_model_file(const std::string& path) {
    const std::filesystem::path p(path);
    std::error_code ec;
    return std::filesystem::is_directory(p, ec) || p.extension() == ".pt" || p.extension() == ".safetensors";
}

// A shape from --config (JSON text or file, or a trained model) and --batch/--time/--input/--input-rate.
bench_shape custom_shape(const std::string& config, const std::string& name, int batch, int time,
                         const std::string& input, std::optional<double> input_rate) {
    bench_shape s{{name, model_config{}, batch, time, input}};
    std::string source = "--config";
    if (is_model_file(config)) {  // its weights are timed, not a fresh model's
        s.trained = std::make_shared<const model<float>>(load_model<float>(config));
        s.config = s.trained->config();
        s.weights = config;
    } else {
        std::string text = config;
        if (std::filesystem::is_regular_file(config)) {
            text = read_text(config);
            source = config;
        } else if (!config.empty() && config.front() != '{') {
            throw file_not_found_error(config);
        }
        // A run config (elmneuron train --config) holds the model under "model".
        const auto j = json::parse(text, nullptr, false);
        if (!j.is_discarded() && j.is_object() && j.contains("model") && j["model"].is_object()) {
            text = j["model"].dump();
            source += ":model";
        }
        s.config = parse_model_config(text, source);
    }
    s.config.validate(source);
    // What a train step keeps per sample-step (activations, outputs and their gradients; roughly), so that a
    // batch x time far beyond memory fails now, not after the peak measurements.
    const auto& c = s.config;
    const double per_step =
        2.0 * c.hidden_size() * std::max(1, c.mlp_num_layers) + 4.0 * c.num_memory + 2.0 * c.num_output;
    check_memory(static_cast<double>(batch) * time * per_step * sizeof(float), "bench", "--batch",
                 std::to_string(batch) + " x " + std::to_string(time) + " sample-steps of activations");
    if (input_rate) {  // checked now, before minutes of measuring, by the function that will use it
        try {
            synthetic_event_rate(input, s.config.num_input, input_rate);
        } catch (const error& e) {
            throw error("bench", "--input-rate", e.expected() + " (--input " + input + ")", e.got());
        }
        s.input_rate = input_rate;
    }
    return s;
}

}  // namespace

void register_bench(CLI::App& app) {
    auto* cmd =
        app.add_subcommand("bench", "Measure inference / backward / train-step speed on reference shapes");
    static std::string json_out, only, peer_python, peer_script, published_code, config,
        name = "custom", input = "counts", scaling;
    static int repeats = 5, threads = 0, peer_repeats = 0, peer_warmup = 2, batch = 8, time = 500;
    static double min_time = 0.3;
    static std::optional<double> input_rate;
    static int stream_steps = 20000;
    static bool peer = false;
    auto* json_opt = cmd->add_option("--json", json_out, "Also write the results as JSON to this file");
    auto* shape_opt = cmd->add_option("--shape", only, "Run only the shape with this name");
    auto* config_opt = cmd->add_option(
        "--config", config,
        "Benchmark this model config instead (JSON text or file with the published keys, or a run config "
        "with a \"model\" section), or a trained model with its weights (a published model folder, .pt or "
        ".safetensors), with --batch (default 8), --time (500), --input (counts)");
    config_opt->excludes(shape_opt);
    // Settings of the --config shape only: given without it they would be ignored, so they are errors.
    cmd->add_option("--name", name, "Name of the --config shape")->needs(config_opt);
    cmd->add_option("--batch", batch, "Batch size of the --config shape")
        ->check(positive_number())
        ->needs(config_opt);
    cmd->add_option("--time", time, "Steps of the --config shape")
        ->check(positive_number())
        ->needs(config_opt);
    cmd->add_option("--input", input, "Input of the --config shape: neuronio, counts or onehot")
        ->check(CLI::IsMember({"neuronio", "counts", "onehot"}))
        ->needs(config_opt);
    cmd->add_option(
           "--input-rate", input_rate,
           "Chance of an event per channel and step of the --config shape's neuronio or counts input "
           "(default 0.02 and 0.03); the peer gets the same")
        ->needs(config_opt);
    cmd->add_option("--repeats", repeats, "Timed calls per measurement, at least (median reported)")
        ->check(positive_number());
    cmd->add_option("--min-time", min_time,
                    "Seconds each measurement times at least (more calls of short ones; 0: --repeats only)")
        ->check(non_negative_number());
    cmd->add_option(
           "--threads", threads,
           "Threads (default or 0: all cores); the peer is timed at 1, 2, 4, ... and this many threads and, "
           "above one, with each installed OpenBLAS build: its fastest configuration counts")
        ->check(non_negative_number());
    auto* stream_opt = cmd->add_option("--stream-steps", stream_steps, "Steps of the streaming measurement")
                           ->check(positive_number())
                           ->excludes(config_opt);
    auto* scaling_opt = cmd->add_option(
        "--scaling", scaling,
        "Instead: sweep batch, steps, d_m and synapses around the NeuronIO d_m 15 shape; write "
        "scaling.csv, scaling.json and scaling.png into this folder (ours only)");
    auto* peer_opt = cmd->add_flag(
        "--peer", peer,
        "Also run the published PyTorch implementation (bench/peer_pytorch.py) and print ratios");
    scaling_opt->check(non_empty_text())
        ->excludes(config_opt)
        ->excludes(shape_opt)
        ->excludes(json_opt)
        ->excludes(peer_opt)
        ->excludes(stream_opt);
    cmd->add_option("--peer-python", peer_python,
                    "Python interpreter for the peer, with torch (default: /usr/bin/python3, which Debian's "
                    "python3-torch serves, else python3 from PATH)")
        ->needs(peer_opt);
    cmd->add_option("--peer-script", peer_script,
                    "Path of peer_pytorch.py (default: $ELM_PEER_SCRIPT, else bench/ of the source tree)")
        ->needs(peer_opt);
    cmd->add_option("--published-code", published_code,
                    "Time the published code itself as the peer: DIR is a checkout of "
                    "github.com/AaronSpieler/elmneuron (its src/ classes are imported; default: the peer "
                    "script's re-implementation)")
        ->check(CLI::ExistingDirectory)
        ->needs(peer_opt);
    cmd->add_option("--peer-repeats", peer_repeats,
                    "Timed repeats of the peer per measurement (default: 3, 1 for sequences over 1000 steps)")
        ->check(non_negative_number())
        ->needs(peer_opt);
    cmd->add_option("--peer-warmup", peer_warmup,
                    "Untimed peer calls before timing (TorchScript optimises on them)")
        ->check(non_negative_number())
        ->needs(peer_opt);
    cmd->callback([stream_opt] {
        set_num_threads(threads);
        const bool stream_steps_given = stream_opt->count() > 0;
        if (!scaling.empty()) {
            create_output_folder(scaling);  // before the sweep's minutes, not after
            scaling_sweep(timing{repeats, min_time}, scaling);
            return;
        }
        std::vector<bench_shape> shapes;
        bool with_streaming = false;
        if (!config.empty()) {
            shapes.push_back(custom_shape(config, name, batch, time, input, input_rate));
        } else {
            std::string names = streaming_name;
            for (const auto& r : reference_shapes()) {
                const bench_shape s{r};
                names += ", " + s.name;
                if (only.empty() || s.name == only) shapes.push_back(s);
            }
            with_streaming = only.empty() || only == streaming_name;
            if (shapes.empty() && !with_streaming)
                throw error("bench", "--shape", "one of " + names, "'" + only + "'");
        }
        if (stream_steps_given && !with_streaming)  // it would be ignored (the CLI's excludes cover --config)
            throw error("bench", "--stream-steps", std::string("a run that includes ") + streaming_name,
                        "--shape " + only);
        if (!json_out.empty()) check_output_file(json_out, {config});  // before minutes of measuring
        json machine = machine_info();
        peer_options po;
        machine_peak peak;
        // The machine's limit: single-core sgemm (Eigen here; with --peer also torch.mm, i.e. the peer's
        // BLAS) and the SIMD FMA peak, before the shapes so that nothing else runs meanwhile.
        std::fprintf(stderr, "measuring single-core sgemm and FMA peaks ...\n");
        peak.eigen_sgemm = measure_sgemm_gflops();
        peak.fma = measure_fma_gflops();
        json peer_env;                          // the peer's environment (torch, BLAS), from its first answer
        int peer_answers = 0, peer_shapes = 0;  // shapes the peer timed, of those it was asked
        if (peer) {
            po.python = !peer_python.empty() ? peer_python : default_peer_python();
            po.script = locate_peer_script(peer_script);
            po.threads = num_threads();
            po.repeats = peer_repeats;
            po.warmup = peer_warmup;
            if (!published_code.empty()) po.published_code = published_code_folder(published_code);
            // With --published-code the script checks the checkout (its layout, its import) here, before
            // anything is measured.
            const auto ps = run_peer_sgemm_peak(po);
            peak.peer_sgemm = ps.gflops;
            machine["peer_sgemm_blas"] = ps.blas;
        }
        machine["timing"] = {
            {"ours", "median of at least --repeats calls timing at least --min-time s, after a warm-up"},
            {"repeats", repeats},
            {"min_time_s", min_time}};
        machine["peak_gflops_one_thread"] = {{"eigen_sgemm", peak.eigen_sgemm},
                                             {"peer_sgemm", peak.peer_sgemm},
                                             {"sgemm_used_for_limit", peak.sgemm()},
                                             {"simd_fma", peak.fma}};
        std::printf(
            "single-core peaks: sgemm %.1f GFLOP/s (Eigen %.1f%s), SIMD FMA %.1f GFLOP/s\n", peak.sgemm(),
            peak.eigen_sgemm,
            peer ? (", peer BLAS " + std::to_string(static_cast<int>(peak.peer_sgemm + 0.5))).c_str() : "",
            peak.fma);
        json results = json::array();
        std::printf("%-28s %3s %10s %10s %10s %10s %12s %12s %9s %7s\n", "shape", "thr", "infer ms", "fwd ms",
                    "fwd+bwd ms", "train ms", "infer s-s/s", "train s-s/s", "limit %", "WS MB");
        for (const auto& s : shapes) {
            auto r = bench_one(s, timing{repeats, min_time}, peak);
            char lim[32];
            std::snprintf(lim, sizeof lim, "%.0f/%.0f", 100 * r["fraction_of_limit_inference"].get<double>(),
                          100 * r["fraction_of_limit_train"].get<double>());
            std::printf("%-28s %3d %10s %10s %10s %10s %12.3g %12.3g %9s %7.1f\n", s.name.c_str(),
                        r["threads"].get<int>(), fmt(r, "inference_ms").c_str(), fmt(r, "forward_ms").c_str(),
                        fmt(r, "forward_backward_ms").c_str(), fmt(r, "train_step_ms").c_str(),
                        r["inference_sample_steps_per_s"].get<double>(),
                        r["train_sample_steps_per_s"].get<double>(), lim, r["workspace_mb"].get<double>());
            if (!s.weights.empty() && r["relu_units_on"].is_number())  // why a trained model runs faster
                std::printf(
                    "%-28s hidden ReLU units on: %.1f %% (products over them skip the others when under a "
                    "third are on)\n",
                    "", 100 * r["relu_units_on"].get<double>());
            if (peer) {  // right after ours, so that both see the same machine load
                std::fprintf(stderr, "  peer: %s ...\n", s.name.c_str());
                ++peer_shapes;
                json pr;
                try {
                    pr = json::parse(run_peer(s, po));
                } catch (const error& e) {  // reported in the shape's row; the others go on
                    pr = {{"error", e.what()}};
                }
                const bool timed = !pr.contains("error");  // run_peer checked the times
                if (timed) ++peer_answers;
                if (peer_env.is_null() && timed) {
                    peer_env = json::object();
                    for (const char* k : peer_environment_keys)
                        if (pr.contains(k)) peer_env[k] = pr[k];
                    peer_env["torch_num_threads"] = peer_field(pr, "torch_num_threads");
                    peer_env["thread_counts"] = peer_field(pr, "thread_counts");
                    peer_env["script"] = po.script;
                }
                for (const char* k : peer_environment_keys) pr.erase(k);
                if (const json& failed = peer_field(pr, "failed_configurations"); failed.is_array())
                    for (const auto& f : failed)
                        std::fprintf(stderr, "  warning: peer with %s not timed: %s\n",
                                     peer_text(f, "blas").c_str(), peer_text(f, "error").c_str());
                const auto ours_params = count_trainable_parameters(s.config);
                if (const json& n = peer_field(pr, "num_trainable");
                    n.is_number() && n.get<double>() != static_cast<double>(ours_params))
                    std::fprintf(stderr, "  warning: peer has %s trainable parameters, ours %lld\n",
                                 n.dump().c_str(), static_cast<long long>(ours_params));
                r["num_trainable"] = ours_params;
                if (timed) {
                    for (const auto m : all_measurements) {
                        const std::string key = measurement_name(m);  // ours: <key>_ms
                        r["peer_over_ours"][key] =
                            pr[peer_time_key(m)].get<double>() / r[key + "_ms"].get<double>();
                    }
                    if (r.contains("fma_bound_inference_ms"))
                        r["best_possible_ratio_at_fma_peak"] = {
                            {"inference", pr[peer_time_key(measurement::inference)].get<double>() /
                                              r["fma_bound_inference_ms"].get<double>()},
                            {"train_step", pr[peer_time_key(measurement::train_step)].get<double>() /
                                               r["fma_bound_train_ms"].get<double>()}};
                }
                r["peer"] = std::move(pr);
            }
            results.push_back(r);
        }
        if (with_streaming) {
            const int saved = threads;
            set_num_threads(1);
            auto r = bench_streaming(stream_steps, timing{repeats, min_time});
            set_num_threads(saved);
            const double rate = r["steps_per_s"].get<double>();
            std::printf(
                "%-28s %3d %10.2f ms for %d steps: %.3g steps/s (%.0f ns/step, one call per step) %s\n",
                streaming_name, 1, r["stream_ms"].get<double>(), stream_steps, rate,
                r["ns_per_step"].get<double>(), rate >= streaming_target ? "ok" : "LOW");
            if (peer)
                r["peer_note"] = "no peer: the published code has no streaming (one step per call) interface";
            results.push_back(r);
        }
        machine["loadavg_end"] = load_average();
        if (peer) {
            machine["peer"] = peer_env;
            print_comparison(results, peer_env, num_threads());
        }
        std::printf(
            "limit %% = time of the per-step MLP FLOPs at %.1f GFLOP/s per thread / measured time "
            "(inference / train step = 3x the MLP FLOPs)\n",
            peak.sgemm());
        if (peer)
            std::printf(
                "bound = peer time / (the FLOPs this implementation cannot avoid at the %.1f GFLOP/s SIMD "
                "FMA peak "
                "per thread): no code doing this arithmetic can beat it\n",
                peak.fma);
        std::printf("load average at start / end: %s / %s (other load on the machine makes timings noisy)\n",
                    machine["loadavg_start"].get<std::string>().c_str(),
                    machine["loadavg_end"].get<std::string>().c_str());
        if (!json_out.empty()) write_json_atomic(json_out, json{{"machine", machine}, {"results", results}});
        // Our times are out (table, JSON); a comparison without a single peer time is still a failure.
        if (peer_shapes > 0 && peer_answers == 0)
            throw error("bench", "--peer", "the peer's times of at least one shape",
                        "none: it failed on every shape (see the table)");
    });
}

}  // namespace elm::cli
