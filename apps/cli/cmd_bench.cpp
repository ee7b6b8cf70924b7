// elmneuron bench: forward, forward+backward and full train-step (fwd + bwd + Adam) time on the reference
// shapes of bench/README.md (or one given config), as a table and JSON. With --peer, runs the published
// PyTorch implementation (bench/peer_pytorch.py) on the same shapes, same thread count, and reports ratios.

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/optim.hpp>

#include <nlohmann/json.hpp>

#include "commands.hpp"

#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
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

// ---- the PyTorch peer (bench/peer_pytorch.py) -----------------------------------------------------

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
    return {{"cpu_model", cpu_model()},
            {"logical_cpus", std::thread::hardware_concurrency()},
            {"threads", num_threads()},
            {"compiler", compiler()},
#ifdef NDEBUG
            {"assertions", false},
#else
            {"assertions", true},
#endif
            {"kernel", std::string(u.sysname) + " " + u.release + " " + u.machine},
            {"loadavg_start", load_average()}};
}

// Single-quoted for /bin/sh.
std::string shell_quote(const std::string& v) {
    std::string q = "'";
    for (char c : v) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// --peer-script, else $ELM_PEER_SCRIPT, else the source tree this binary was built from (ELM_SOURCE_DIR,
// if the build defines it), else bench/peer_pytorch.py next to or above the executable's folder.
std::string locate_peer_script(const std::string& given) {
    namespace fs = std::filesystem;
    if (!given.empty()) {
        if (!fs::is_regular_file(given)) throw file_not_found_error(given);
        return given;
    }
    if (const char* env = std::getenv("ELM_PEER_SCRIPT"); env && *env) {
        if (!fs::is_regular_file(env)) throw file_not_found_error(env);
        return env;
    }
    std::vector<fs::path> candidates;
#ifdef ELM_SOURCE_DIR
    candidates.push_back(fs::path(ELM_SOURCE_DIR) / "bench" / "peer_pytorch.py");
#endif
    std::error_code ec;
    const fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
    if (!ec) {
        candidates.push_back(exe_dir / ".." / "bench" / "peer_pytorch.py");
        candidates.push_back(exe_dir / "bench" / "peer_pytorch.py");
        candidates.push_back(exe_dir / ".." / "share" / "elmneuron" / "peer_pytorch.py");
    }
    std::string tried;
    for (const auto& c : candidates) {
        if (fs::is_regular_file(c)) return fs::weakly_canonical(c).string();
        tried += (tried.empty() ? "" : ", ") + c.string();
    }
    throw error("bench", "--peer-script", "the path of bench/peer_pytorch.py", "not found (tried " + tried + ")",
                "pass --peer-script PATH or set ELM_PEER_SCRIPT");
}

struct peer_options {
    std::string python, script;
    int threads = 1;
    int repeats = 0;  // 0: 3, or 1 for long sequences
    int warmup = 2;
};

// Runs the peer on one shape; returns its JSON object (with "error" set if the peer failed on this shape).
// Throws elm::error when the peer cannot run at all (no interpreter, no torch).
json run_peer(const bench_shape& s, const peer_options& o) {
    namespace fs = std::filesystem;
    const int repeats = o.repeats > 0 ? o.repeats : (s.time > 1000 ? 1 : 3);
    json request{{"threads", o.threads},
                 {"repeats", repeats},
                 {"warmup", o.warmup},
                 {"seed", 0},
                 {"shapes",
                  {{{"name", s.name},
                    {"config", json::parse(to_json(s.config))},
                    {"batch", s.batch},
                    {"time", s.time},
                    {"input_kind", s.input_kind}}}}};
    const fs::path req = fs::temp_directory_path() / ("elmneuron-peer-" + std::to_string(getpid()) + ".json");
    {
        std::ofstream f(req);
        f << request.dump() << "\n";
    }
    const std::string cmd = shell_quote(o.python) + " " + shell_quote(o.script) + " < " + shell_quote(req.string());
    std::fflush(stdout);
    FILE* p = popen(cmd.c_str(), "r");
    std::error_code ec;
    if (!p) {
        fs::remove(req, ec);
        throw error("bench", "--peer-python", "a runnable Python interpreter", "cannot start: " + cmd);
    }
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    const int status = pclose(p);
    fs::remove(req, ec);
    std::optional<json> result;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line.front() != '{') continue;
        auto j = json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.contains("shape")) result = std::move(j);
    }
    if (!result) {
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        throw error("bench", "--peer", "JSON results from " + o.script,
                    "no result (exit status " + std::to_string(code) + "; command: " + cmd + ")",
                    "the peer needs Debian's python3-torch: scripts/install-deps.sh --peer, and --peer-python "
                    "/usr/bin/python3 if another python3 comes first in PATH");
    }
    return *result;
}

std::string fmt_ms(const json& j, const char* key) {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return "-";
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", j[key].get<double>());
    return b;
}

std::string fmt_ratio(const json& ours, const json& peer, const char* key) {
    if (!peer.is_object() || !peer.contains(key) || !peer[key].is_number()) return "-";
    char b[32];
    std::snprintf(b, sizeof b, "%.1fx", peer[key].get<double>() / ours[key].get<double>());
    return b;
}

const char* const peer_environment_keys[] = {"peer", "python", "torch_version", "torch_num_interop_threads",
                                             "torch_parallel_backend", "blas", "env", "cpu_count"};

void print_comparison(const json& results, const json& peer_env) {
    std::printf("\nours vs the published PyTorch code (peer); ratio = peer time / our time (>1: ours faster)\n");
    if (peer_env.is_object())
        std::printf("threads: ours %d, peer %d; peer: torch %s, BLAS %s\n", num_threads(),
                    peer_env.value("torch_num_threads", 0), peer_env.value("torch_version", "?").c_str(),
                    peer_env["blas"].value("summary", "?").c_str());
    std::printf("%-30s | %9s %9s %7s | %9s %9s %7s | %9s %9s %7s\n", "", "forward", "", "", "fwd+bwd", "", "",
                "train", "", "");
    std::printf("%-30s | %9s %9s %7s | %9s %9s %7s | %9s %9s %7s\n", "shape (ms)", "ours", "peer", "ratio", "ours",
                "peer", "ratio", "ours", "peer", "ratio");
    for (const auto& r : results) {
        const json& pr = r.contains("peer") ? r["peer"] : json();
        std::printf("%-30s | %9s %9s %7s | %9s %9s %7s | %9s %9s %7s\n", r["shape"].get<std::string>().c_str(),
                    fmt_ms(r, "forward_ms").c_str(), fmt_ms(pr, "forward_ms").c_str(),
                    fmt_ratio(r, pr, "forward_ms").c_str(), fmt_ms(r, "forward_backward_ms").c_str(),
                    fmt_ms(pr, "forward_backward_ms").c_str(), fmt_ratio(r, pr, "forward_backward_ms").c_str(),
                    fmt_ms(r, "train_step_ms").c_str(), fmt_ms(pr, "train_step_ms").c_str(),
                    fmt_ratio(r, pr, "train_step_ms").c_str());
        if (pr.is_object() && pr.contains("error"))
            std::printf("  peer failed: %s\n", pr["error"].get<std::string>().c_str());
    }
}

}  // namespace

void register_bench(CLI::App& app) {
    auto* cmd = app.add_subcommand("bench", "Measure forward / backward / train-step speed on reference shapes");
    static std::string json_out, only, peer_python, peer_script;
    static int repeats = 5, threads = 0, peer_repeats = 0, peer_warmup = 2;
    static bool peer = false;
    cmd->add_option("--json", json_out, "Also write the results as JSON to this file");
    cmd->add_option("--shape", only, "Run only the shape with this name");
    cmd->add_option("--repeats", repeats, "Timed repeats per measurement (median reported)")->check(CLI::PositiveNumber);
    cmd->add_option("--threads", threads, "Threads (default: all cores); the peer gets the same number");
    cmd->add_flag("--peer", peer, "Also run the published PyTorch implementation (bench/peer_pytorch.py) and print ratios");
    cmd->add_option("--peer-python", peer_python,
                    "Python interpreter for the peer, with torch (default: /usr/bin/python3, which Debian's "
                    "python3-torch serves, else python3 from PATH)");
    cmd->add_option("--peer-script", peer_script,
                    "Path of peer_pytorch.py (default: $ELM_PEER_SCRIPT, else bench/ of the source tree)");
    cmd->add_option("--peer-repeats", peer_repeats,
                    "Timed repeats of the peer per measurement (default: 3, 1 for sequences over 1000 steps)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--peer-warmup", peer_warmup, "Untimed peer calls before timing (TorchScript optimises on them)")
        ->check(CLI::NonNegativeNumber);
    cmd->callback([] {
        if (!only.empty() && only != "streaming_single_sample_dm15") {
            std::string names = "streaming_single_sample_dm15";
            bool found = false;
            for (const auto& s : reference_shapes()) {
                found = found || s.name == only;
                names += ", " + s.name;
            }
            if (!found) throw error("bench", "--shape", "one of " + names, "'" + only + "'");
        }
        set_num_threads(threads);
        json machine = machine_info();
        peer_options po;
        if (peer) {
            po.python = !peer_python.empty()                             ? peer_python
                        : std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3"
                                                                       : "python3";
            po.script = locate_peer_script(peer_script);
            po.threads = num_threads();
            po.repeats = peer_repeats;
            po.warmup = peer_warmup;
        }
        json peer_env;  // the peer's environment (torch, BLAS), from its first answer
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
            if (peer) {  // right after ours, so that both see the same machine load
                std::fprintf(stderr, "  peer: %s ...\n", s.name.c_str());
                json pr = run_peer(s, po);
                if (peer_env.is_null() && !pr.contains("error")) {
                    peer_env = json::object();
                    for (const char* k : peer_environment_keys)
                        if (pr.contains(k)) peer_env[k] = pr[k];
                    peer_env["torch_num_threads"] = pr.value("torch_num_threads", 0);
                    peer_env["script"] = po.script;
                }
                for (const char* k : peer_environment_keys) pr.erase(k);
                const auto ours_params = count_trainable_parameters(s.config);
                if (pr.contains("num_trainable") && pr["num_trainable"].get<std::int64_t>() != ours_params)
                    std::fprintf(stderr, "  warning: peer has %lld trainable parameters, ours %lld\n",
                                 static_cast<long long>(pr["num_trainable"].get<std::int64_t>()),
                                 static_cast<long long>(ours_params));
                r["num_trainable"] = ours_params;
                if (!pr.contains("error"))
                    r["peer_over_ours"] = {
                        {"forward", pr["forward_ms"].get<double>() / r["forward_ms"].get<double>()},
                        {"forward_backward",
                         pr["forward_backward_ms"].get<double>() / r["forward_backward_ms"].get<double>()},
                        {"train_step", pr["train_step_ms"].get<double>() / r["train_step_ms"].get<double>()}};
                r["peer"] = std::move(pr);
            }
            results.push_back(r);
        }
        if (only.empty() || only == "streaming_single_sample_dm15") {
            const int saved = threads;
            set_num_threads(1);
            auto r = bench_streaming(20000);
            set_num_threads(saved);
            std::printf("%-30s %8d %12.2f %14s %12s %16.3g  (forward steps/s)\n", "streaming_single_sample_dm15", 1,
                        r["forward_ms"].get<double>(), "-", "-", r["forward_sample_steps_per_s"].get<double>());
            if (peer) {
                r["peer"] = nullptr;
                r["peer_note"] = "no peer: the published code has no streaming (one step per call) interface";
            }
            results.push_back(r);
        }
        machine["loadavg_end"] = load_average();
        if (peer) {
            machine["peer"] = peer_env;
            print_comparison(results, peer_env);
            std::printf("load average at start / end: %s / %s (timings are noisy on a loaded machine)\n",
                        machine["loadavg_start"].get<std::string>().c_str(),
                        machine["loadavg_end"].get<std::string>().c_str());
        }
        if (!json_out.empty()) {
            std::ofstream f(json_out + ".tmp");
            f << json{{"machine", machine}, {"results", results}}.dump(2) << "\n";
            f.close();
            std::rename((json_out + ".tmp").c_str(), json_out.c_str());
        }
    });
}

}  // namespace elm::cli
