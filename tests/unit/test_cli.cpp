// The elmneuron CLI as a user runs it: `info` counts equal every official model's model_stats.json,
// `convert` + `run` reproduce the published outputs of the pretrained golden cases, bad input exits 2
// with a message naming the file.

#include <elmneuron/benchmark.hpp>
#include <elmneuron/config.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/tensor_file.hpp>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>
#include <omp.h>

#include <sys/wait.h>
#include <unistd.h>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct result {
    int status;
    std::string output;
};

result run_cli(const std::string& args) {
    const std::string cmd = std::string(ELM_CLI_PATH) + " " + args + " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return {-1, "popen failed"};
    std::string out;
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe)) out += buf.data();
    const int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

fs::path temp_dir() {
    auto d = fs::temp_directory_path() / ("elm_cli_test_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
}

double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num / den);
}

TEST(cli, info_counts_equal_published_model_stats) {
    int checked = 0;
    for (const auto& entry : fs::directory_iterator(ELM_MODELS_DIR)) {
        if (!entry.is_directory()) continue;
        std::ifstream stats(entry.path() / "model_stats.json");
        const auto published = nlohmann::json::parse(stats)["model_param_count"].get<std::int64_t>();
        const auto r = run_cli("info --json " + entry.path().string());
        ASSERT_EQ(r.status, 0) << r.output;
        const auto j = nlohmann::json::parse(r.output);
        EXPECT_EQ(j["trainable_parameters"].get<std::int64_t>(), published) << entry.path();
        ++checked;
    }
    EXPECT_EQ(checked, 15);
}

TEST(cli, convert_then_run_reproduces_pretrained_golden_outputs) {
    const auto dir = temp_dir();
    for (const std::string name : {"num_memory_15", "num_memory_20"}) {
        const std::string golden = std::string(ELM_GOLDEN_DIR) + "/pretrained_" + name + ".safetensors";
        const auto converted = (dir / (name + ".safetensors")).string();
        auto r = run_cli("convert " + std::string(ELM_MODELS_DIR) + "/" + name + " " + converted);
        ASSERT_EQ(r.status, 0) << r.output;
        for (const std::string& model : {std::string(ELM_MODELS_DIR) + "/" + name, converted}) {
            const auto out = (dir / "out.safetensors").string();
            r = run_cli("run " + model + " --input " + golden + " --output " + out + " --precision f64");
            ASSERT_EQ(r.status, 0) << r.output;
            const auto ours = elm::read_safetensors(out).at("output").to<double>();
            const auto ref = elm::read_safetensors(golden).at("output").to<double>();
            EXPECT_LT(relative_error(ours, ref), 1e-10) << model;
        }
    }
    fs::remove_all(dir);
}

TEST(cli, bad_inputs_exit_2_naming_the_file) {
    const auto dir = temp_dir();
    auto r = run_cli("info " + (dir / "missing.safetensors").string());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("missing.safetensors"), std::string::npos) << r.output;

    const auto garbage = dir / "garbage.safetensors";
    std::ofstream(garbage) << "this is not a safetensors file";
    r = run_cli("info " + garbage.string());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("garbage.safetensors"), std::string::npos) << r.output;

    // An input whose last dimension is not the model's num_input.
    const std::string golden = std::string(ELM_GOLDEN_DIR) + "/v1_vanilla_small.safetensors";
    r = run_cli("run " + std::string(ELM_MODELS_DIR) + "/num_memory_1 --input " + golden + " --output " +
                (dir / "o.npy").string());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("1278"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir / "o.npy"));

    r = run_cli("frobnicate");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("unknown subcommand 'frobnicate'"), std::string::npos) << r.output;
    // Options checked where they are given, naming themselves.
    r = run_cli("eval -m " + std::string(ELM_MODELS_DIR) + "/num_memory_1 -d " + dir.string() +
                " --window 0");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("--window"), std::string::npos) << r.output;
    r = run_cli("train --config " + dir.string());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("a run config JSON file"), std::string::npos) << r.output;
    fs::create_directories(dir / "taken.npy");
    r = run_cli("run " + std::string(ELM_MODELS_DIR) + "/num_memory_1 --input " +
                std::string(ELM_GOLDEN_DIR) + "/pretrained_num_memory_15.safetensors --output " +
                (dir / "taken.npy").string());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("a folder"), std::string::npos) << r.output;
    // A training checkpoint where a model is expected: said what to use instead.
    elm::tensor_file ckpt =
        elm::state_dict(elm::load_model<float>(std::string(ELM_MODELS_DIR) + "/num_memory_1"));
    ckpt.metadata["format"] = "elmneuron.checkpoint.v1";
    elm::write_safetensors((dir / "checkpoint.safetensors").string(), ckpt);
    r = run_cli("info " + (dir / "checkpoint.safetensors").string());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("best_model.safetensors"), std::string::npos) << r.output;

    // An output name that is neither .npy nor .safetensors: refused before any work, nothing written.
    r = run_cli("run " + std::string(ELM_MODELS_DIR) + "/num_memory_1 --input " +
                std::string(ELM_GOLDEN_DIR) + "/pretrained_num_memory_15.safetensors --output " +
                (dir / "y.txt").string());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("--output"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir / "y.txt"));
    fs::remove_all(dir);
}

// An output path that is one of the command's inputs (under any spelling) is refused before any work: run
// would replace the model or the input it reads, bench --json the model it times.
TEST(cli, outputs_never_replace_the_inputs) {
    const auto dir = temp_dir();
    const auto model = (dir / "m.safetensors").string();
    ASSERT_EQ(run_cli("convert " + std::string(ELM_MODELS_DIR) + "/num_memory_1 " + model).status, 0);
    const auto model_bytes = elm::read_safetensors(model).tensors.size();
    const auto input = (dir / "x.npy").string();
    elm::write_npy(input, elm::make_tensor<float>("x", {3, 1278}, std::vector<float>(3 * 1278, 0.0f)));
    const std::string other_spelling = (dir / ".." / dir.filename() / "x.npy").string();
    for (const auto& [args, replaced] :
         {std::pair{"run " + model + " -i " + input + " -o " + model, model},
          {"run " + model + " -i " + input + " -o " + other_spelling, input},
          {"bench --config " + model + " --batch 1 --time 2 --json " + model + " --repeats 1 --min-time 0",
           model}}) {
        const auto r = run_cli(args);
        EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
        EXPECT_NE(r.output.find("the same file"), std::string::npos) << r.output;
        EXPECT_EQ(r.output.find("measuring"), std::string::npos) << r.output;
    }
    EXPECT_EQ(elm::read_safetensors(model).tensors.size(), model_bytes);  // still the model
    EXPECT_EQ(elm::read_npy(input).shape, (std::vector<std::int64_t>{3, 1278}));
    fs::remove_all(dir);
}

// Requests far beyond memory fail at once with a reason (exit 2), not after minutes or killed by the kernel:
// traces of a long input (estimated before the forward), a bench batch x time (estimated before the peak
// measurements), and an allocation that fails anyway ("out of memory", not an internal error).
TEST(cli, requests_beyond_memory_fail_at_once_with_a_reason) {
    const auto dir = temp_dir();
    const auto input = (dir / "long.npy").string();  // [T, 1], 4 MB; its synapse traces: 4 TB
    elm::write_npy(input, elm::make_tensor<float>("x", {1000000, 1}, std::vector<float>(1000000, 0.0f)));
    const auto config = (dir / "wide.json").string();
    const std::string config_text = R"({"num_input": 1, "num_output": 2, "num_memory": 2, "num_branch": 1000,
        "num_synapse_per_branch": 1000, "input_to_synapse_routing": "random_routing"})";
    std::ofstream(config) << config_text;
    const auto model = (dir / "wide.safetensors").string();
    elm::save_model(model, elm::model<float>(elm::parse_model_config(config_text, config), 1));
    auto r = run_cli("run " + model + " -i " + input + " -o " + (dir / "y.safetensors").string() +
                     " --synapse-traces");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--synapse-traces"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("memory available"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir / "y.safetensors"));
    for (const std::string& size :
         {std::string("1000000 --time 1000000"), std::string("2000000000 --time 2000000000")}) {
        r = run_cli("bench --config " + config + " --batch " + size + " --repeats 1 --min-time 0");
        EXPECT_EQ(r.status, 2) << r.output;
        EXPECT_NE(r.output.find("memory available"), std::string::npos) << r.output;
        EXPECT_EQ(r.output.find("measuring"), std::string::npos) << r.output;
    }
    fs::remove_all(dir);
}

// The machine limit's FLOPs per sample-step (the performance issue's definition, bench/README.md) for every
// MLP depth: 2·((d_tree + d_m)·n0 + (L - 1)·d_mlp² + d_mlp·d_m), n0 = d_mlp, or d_m without hidden layers.
TEST(cli, limit_flops_for_every_mlp_depth) {
    elm::model_config c;
    c.num_input = 30;  // d_tree = 30
    c.num_output = 3;
    c.num_memory = 5;
    c.mlp_hidden_size = 7;
    c.mlp_num_layers = 0;
    EXPECT_EQ(elm::mlp_flops_per_sample_step(c), 2.0 * (35 * 5));
    c.mlp_num_layers = 1;
    EXPECT_EQ(elm::mlp_flops_per_sample_step(c), 2.0 * (35 * 7 + 7 * 5));
    c.mlp_num_layers = 3;
    EXPECT_EQ(elm::mlp_flops_per_sample_step(c), 2.0 * (35 * 7 + 2 * 7 * 7 + 7 * 5));
    c.num_branch = 4;  // the branches, not the inputs, feed layer 0
    EXPECT_EQ(elm::mlp_flops_per_sample_step(c), 2.0 * (9 * 7 + 2 * 7 * 7 + 7 * 5));
}

// run keeps the input's rank ([T, num_input] in, [T, num_output] out) and writes v1's synapse traces on
// request (--synapse-traces), which sum per branch to the branch traces it also writes (E1-E3: the branch
// input is the sum of its synapses).
TEST(cli, run_keeps_the_input_rank_and_writes_v1_synapse_traces) {
    const auto dir = temp_dir();
    const std::string model = std::string(ELM_MODELS_DIR) + "/num_memory_1";
    const auto golden =
        elm::read_safetensors(std::string(ELM_GOLDEN_DIR) + "/pretrained_num_memory_15.safetensors");
    const auto& in = golden.at("input");  // [2, 500, 1278]
    const auto steps = in.shape[1], width = in.shape[2];
    auto values = in.to<float>();
    values.resize(static_cast<std::size_t>(steps * width));  // the first sample, as [T, num_input]
    elm::write_npy((dir / "x.npy").string(), elm::make_tensor<float>("x", {steps, width}, values));
    auto r = run_cli("run " + model + " -i " + (dir / "x.npy").string() + " -o " + (dir / "y.npy").string());
    ASSERT_EQ(r.status, 0) << r.output;
    const auto y2 = elm::read_npy((dir / "y.npy").string());
    EXPECT_EQ(y2.shape, (std::vector<std::int64_t>{steps, 2}));
    r = run_cli("run " + model + " -i " + std::string(ELM_GOLDEN_DIR) +
                "/pretrained_num_memory_15.safetensors -o " + (dir / "y.safetensors").string() +
                " --synapse-traces");
    ASSERT_EQ(r.status, 0) << r.output;
    const auto f = elm::read_safetensors((dir / "y.safetensors").string());
    const auto y3 = f.at("output").to<float>();
    const auto first = y2.to<float>();
    for (std::size_t i = 0; i < first.size(); ++i) EXPECT_EQ(first[i], y3[i]);  // the same sample's output
    const auto& synapse = f.at("trace.synapse", {2, steps, 4500});
    const auto& branch = f.at("trace.branch", {2, steps, 45});
    const auto s = synapse.to<double>(), b = branch.to<double>();
    double worst = 0;
    for (std::size_t row = 0; row < static_cast<std::size_t>(2 * steps); ++row)
        for (std::size_t j = 0; j < 45; ++j) {
            double sum = 0;
            for (std::size_t k = 0; k < 100; ++k) sum += s[row * 4500 + j * 100 + k];
            worst = std::max(worst, std::abs(sum - b[row * 45 + j]) / (1 + std::abs(sum)));
        }
    EXPECT_LT(worst, 1e-5);
    fs::remove_all(dir);
}

}  // namespace

namespace {

// One sample over four threads: the forward runs on one, the backward on a team of four (one chunk, its sums
// shared out; docs/model.md "Threads and determinism"), and the JSON says so.
// `elmneuron bench` of a tiny custom config, one quick repeat, 40 steps: its JSON and printed output.
struct bench_run {
    nlohmann::json j;
    std::string output;
};
bench_run bench_tiny_config(int batch, int threads) {
    const auto dir = temp_dir();
    const auto out = dir / "bench.json";
    const auto r =
        run_cli("bench --config '{\"num_input\": 20, \"num_output\": 2, \"num_memory\": 4}' --batch " +
                std::to_string(batch) + " --time 40 --input counts --repeats 1 --min-time 0 --threads " +
                std::to_string(threads) + " --json " + out.string());
    EXPECT_EQ(r.status, 0) << r.output;
    std::ifstream f(out);
    bench_run run{r.status == 0 ? nlohmann::json::parse(f) : nlohmann::json::object(), r.output};
    fs::remove_all(dir);
    return run;
}

TEST(cli, bench_reports_the_backward_threads_of_teams) {
    const auto [j, output] = bench_tiny_config(1, 4);
    ASSERT_TRUE(j.contains("results")) << output;
    const auto& s = j["results"][0];
    EXPECT_EQ(s["threads"], 1);
    if (!omp_get_dynamic() && omp_get_thread_limit() >= 4) {
        EXPECT_EQ(s["backward_threads"], 4);  // min(4 threads / 1 chunk, max(1 row, 1 + 3 sums))
    }
}

TEST(cli, bench_custom_config_writes_every_measurement) {
    const auto [j, output] = bench_tiny_config(3, 1);
    ASSERT_TRUE(j.contains("results")) << output;
    const auto& peaks = j["machine"]["peak_gflops_one_thread"];
    EXPECT_GT(peaks["eigen_sgemm"].get<double>(), 0);
    EXPECT_GT(peaks["simd_fma"].get<double>(), 0);
    ASSERT_EQ(j["results"].size(), 1u);
    const auto& s = j["results"][0];
    EXPECT_EQ(s["shape"], "custom");
    EXPECT_EQ(s["batch"], 3);
    EXPECT_EQ(s["time"], 40);
    EXPECT_EQ(s["threads"], 1);
    EXPECT_EQ(s["backward_threads"], 1);
    for (const char* key :
         {"inference_ms", "forward_ms", "forward_backward_ms", "train_step_ms", "train_ms_per_step",
          "inference_sample_steps_per_s", "train_sample_steps_per_s", "workspace_mb", "peak_rss_mb",
          "limit_inference_ms", "fraction_of_limit_inference", "fraction_of_limit_train",
          "own_gflop_inference", "own_gflop_train_step", "fma_bound_inference_ms", "fma_bound_train_ms"})
        EXPECT_GT(s[key].get<double>(), 0) << key;
    // The limit is the MLP's FLOPs at the sgemm peak: 2·((20 + 4)·8 + 8·4) FLOPs per sample-step.
    EXPECT_NEAR(s["mlp_gflop_per_call"].get<double>(), 2.0 * (24 * 8 + 8 * 4) * 3 * 40 / 1e9, 1e-12);
    // Every derived number recomputed from the JSON's own measurements with bench/README.md's formulas.
    const auto near = [](double ours, double expected) {
        EXPECT_NEAR(ours, expected, 1e-9 * std::max(1.0, std::abs(expected)));
    };
    const double run_threads = s["threads"].get<double>(),
                 sgemm = peaks["sgemm_used_for_limit"].get<double>(), fma = peaks["simd_fma"].get<double>(),
                 steps = 3 * 40, events = s["input_events"].get<double>();
    EXPECT_GT(events, 0);
    const double limit_ms = 1e3 * s["mlp_gflop_per_call"].get<double>() / (sgemm * run_threads);
    near(s["limit_inference_ms"].get<double>(), limit_ms);
    near(s["limit_train_ms"].get<double>(), 3 * limit_ms);
    near(s["fraction_of_limit_inference"].get<double>(), limit_ms / s["inference_ms"].get<double>());
    near(s["fraction_of_limit_train"].get<double>(), 3 * limit_ms / s["train_step_ms"].get<double>());
    // Unavoidable FLOPs: memory half of layer 0 (4·8), output layer (8·4), readout (4·2) per sample-step, and
    // one 8-wide row per input event; a train step: the dense part three times, the events twice.
    const double dense = 2.0 * (4 * 8 + 8 * 4 + 4 * 2), per_event = 2.0 * 8;
    near(s["own_gflop_inference"].get<double>(), (dense * steps + per_event * events) / 1e9);
    near(s["own_gflop_train_step"].get<double>(), (3 * dense * steps + 2 * per_event * events) / 1e9);
    near(s["fma_bound_inference_ms"].get<double>(),
         1e3 * s["own_gflop_inference"].get<double>() / (fma * run_threads));
    near(s["fma_bound_train_ms"].get<double>(),
         1e3 * s["own_gflop_train_step"].get<double>() / (fma * run_threads));
    near(s["inference_sample_steps_per_s"].get<double>(), steps / (s["inference_ms"].get<double>() / 1e3));
    near(s["train_sample_steps_per_s"].get<double>(), steps / (s["train_step_ms"].get<double>() / 1e3));
    near(s["train_ms_per_step"].get<double>(), s["train_step_ms"].get<double>() / 40);
    near(s["inference_ms_per_step"].get<double>(), s["inference_ms"].get<double>() / 40);
    EXPECT_EQ(j["machine"]["timing"]["repeats"], 1);
    EXPECT_EQ(j["machine"]["timing"]["min_time_s"], 0.0);
    // The printed row shows each time to three significant digits, however small (this shape runs in
    // microseconds: a fixed two decimals printed 0.00).
    std::istringstream lines(output);
    std::string line;
    bool found = false;
    while (std::getline(lines, line)) {
        std::istringstream cells(line);
        std::string name;
        int threads = 0;
        double inference = 0, forward = 0, forward_backward = 0, train = 0;
        if (!(cells >> name >> threads >> inference >> forward >> forward_backward >> train) ||
            name != "custom")
            continue;
        found = true;
        // Three significant digits as printed (a fixed "0.00" has none).
        std::istringstream again(line);
        std::string cell;
        again >> cell >> cell;
        for (int k = 0; k < 4; ++k) {
            again >> cell;
            std::string digits;
            for (char ch : cell.substr(0, cell.find('e')))
                if (ch >= '0' && ch <= '9' && !(digits.empty() && ch == '0')) digits += ch;
            EXPECT_GE(digits.size(), 3u) << cell << " in: " << line;
        }
        EXPECT_EQ(threads, 1);
        EXPECT_NEAR(inference, s["inference_ms"].get<double>(), 0.005 * s["inference_ms"].get<double>());
        EXPECT_NEAR(forward, s["forward_ms"].get<double>(), 0.005 * s["forward_ms"].get<double>());
        EXPECT_NEAR(forward_backward, s["forward_backward_ms"].get<double>(),
                    0.005 * s["forward_backward_ms"].get<double>());
        EXPECT_NEAR(train, s["train_step_ms"].get<double>(), 0.005 * s["train_step_ms"].get<double>());
    }
    EXPECT_TRUE(found) << output;
}

// --config with a trained model times its weights: the published NeuronIO d_m 100 model has few of its hidden
// ReLU units on (what the sparse products skip), a fresh model of the same config about half.
TEST(cli, bench_times_a_trained_model_with_its_weights) {
    const auto dir = temp_dir();
    const std::string model = std::string(ELM_MODELS_DIR) + "/num_memory_100";
    double on[2] = {0, 0};
    for (int k = 0; k < 2; ++k) {
        const auto out = dir / ("bench" + std::to_string(k) + ".json");
        const std::string config = k == 0 ? model : model + "/model_config.json";
        const auto r = run_cli("bench --config " + config +
                               " --batch 2 --time 30 --input neuronio --repeats 1 --min-time 0 --threads 1 "
                               "--json " +
                               out.string());
        ASSERT_EQ(r.status, 0) << r.output;
        std::ifstream f(out);
        const auto s = nlohmann::json::parse(f)["results"][0];
        EXPECT_EQ(s["config"]["num_memory"], 100);
        EXPECT_EQ(s["weights"], k == 0 ? nlohmann::json(model) : nlohmann::json("fresh model, seed 1"));
        on[k] = s["relu_units_on"].get<double>();
        // The console says it for a trained model (why it runs faster than a fresh one).
        EXPECT_EQ(r.output.find("hidden ReLU units on") != std::string::npos, k == 0) << r.output;
    }
    EXPECT_GT(on[0], 0.0);
    EXPECT_LT(on[0], 0.2);
    EXPECT_GT(on[1], 0.3);
    EXPECT_LT(on[1], 0.7);
    const auto r = run_cli("bench --config " + (dir / "missing.pt").string() + " --threads 1");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("missing.pt"), std::string::npos) << r.output;
    fs::remove_all(dir);
}

// --min-time: each of the four measurements (inference, forward, forward+backward, train step) keeps calling
// the model until it has timed that long, however short one call is; --repeats alone times that many calls.
TEST(cli, bench_min_time_times_each_measurement_that_long) {
    const auto dir = temp_dir();
    const std::string model =
        "bench --config '{\"num_input\": 20, \"num_output\": 2, \"num_memory\": 4}' "
        "--batch 3 --time 40 --input counts --threads 1 --json ";
    const auto start = std::chrono::steady_clock::now();
    const auto r = run_cli(model + (dir / "a.json").string() + " --repeats 2 --min-time 0.2");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(r.status, 0) << r.output;
    // Four measurements of at least 0.2 s each (a lower bound only: other load on the machine can only
    // lengthen the run, never shorten it).
    EXPECT_GE(seconds, 0.8);
    const auto r0 = run_cli(model + (dir / "b.json").string() + " --repeats 2 --min-time 0");
    ASSERT_EQ(r0.status, 0) << r0.output;
    std::ifstream fa(dir / "a.json"), fb(dir / "b.json");
    const auto a = nlohmann::json::parse(fa)["results"][0], b = nlohmann::json::parse(fb)["results"][0];
    for (const char* m : {"inference", "forward", "forward_backward", "train_step"}) {
        EXPECT_EQ(b["timed_calls"][m], 2) << m;
        // Far more calls than --repeats: a call of this tiny model takes microseconds. (Not n·median ≥ 0.2 s:
        // under load a few slow calls fill the time while the median stays short.)
        const int n = a["timed_calls"][m];
        EXPECT_GT(n, 20) << m;
    }
    fs::remove_all(dir);
}

// --input-rate sets the density of the --config shape's synthetic events (0: no events at all, whose
// inference then equals the model without input) and is reported; the default is the kind's.
TEST(cli, bench_input_rate_sets_the_event_density) {
    const auto dir = temp_dir();
    const int batch = 4, time = 50, channels = 300;
    auto events_at = [&](const std::string& rate) {
        const auto out = dir / ("bench" + rate + ".json");
        const auto r = run_cli("bench --config '{\"num_input\": " + std::to_string(channels) +
                               ", \"num_output\": 2, \"num_memory\": 4}' --batch " + std::to_string(batch) +
                               " --time " + std::to_string(time) + " --input neuronio " +
                               (rate.empty() ? "" : "--input-rate " + rate) +
                               " --repeats 1 --min-time 0 --threads 1 --json " + out.string());
        EXPECT_EQ(r.status, 0) << r.output;
        std::ifstream f(out);
        const auto s = nlohmann::json::parse(f)["results"][0];
        return std::make_pair(s["input_events"].get<double>(), s["input_rate"].get<double>());
    };
    const double pairs = static_cast<double>(batch) * time * channels;
    for (const auto& [given, rate] :
         std::vector<std::pair<std::string, double>>{{"", 0.02}, {"0", 0.0}, {"0.25", 0.25}, {"1", 1.0}}) {
        const auto [events, reported] = events_at(given);
        EXPECT_EQ(reported, rate) << given;
        // Binomial count: within 6 standard deviations of pairs·rate (exact at 0 and 1).
        EXPECT_NEAR(events, pairs * rate, 6 * std::sqrt(pairs * rate * (1 - rate)) + 1e-9) << given;
    }
    fs::remove_all(dir);
}

TEST(cli, bench_rejects_unknown_shapes_and_bad_configs) {
    auto r = run_cli("bench --shape no_such_shape");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("--shape"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("neuronio_branch_elm_dm15"), std::string::npos) << r.output;
    r = run_cli("bench --config '{\"num_input\": 0, \"num_output\": 2}'");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("num_input"), std::string::npos) << r.output;
    r = run_cli("bench --config /no/such/config.json");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.output.find("/no/such/config.json"), std::string::npos) << r.output;
}

// Options that would be ignored in the combination given are usage errors (status 2, the option named), and
// numeric checks say what they expected (bench, and the thread / worker counts of run, eval, simulate).
TEST(cli, bench_rejects_options_it_would_ignore) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"bench --batch 4", "--batch requires --config"},
        {"bench --time 40 --shape neuronio_branch_elm_dm15", "--time requires --config"},
        {"bench --input onehot", "--input requires --config"},
        {"bench --shape shd_vanilla_elm_dm100 --config '{\"num_input\": 3, \"num_output\": 1}'", "excludes"},
        {"bench --peer-repeats 2", "--peer-repeats requires --peer"},
        {"bench --peer-python python3", "--peer-python requires --peer"},
        {"bench --scaling x --peer", "excludes"},
        {"bench --scaling x --json y.json", "excludes"},
        {"bench --threads -2", "--threads: expected 0 or more, got '-2'"},
        {"bench --config '{\"num_input\": 3, \"num_output\": 1}' --batch 0", "--batch: expected more than 0"},
        {"bench --min-time -1", "--min-time: expected 0 or more"},
        {"bench --config '{\"num_input\": 3, \"num_output\": 1}' --stream-steps 5", "excludes"},
        {"bench --scaling x --stream-steps 5", "excludes"},
        {"bench --shape neuronio_branch_elm_dm15 --stream-steps 5", "--stream-steps"},
        {"bench --scaling=", "--scaling"},
        {"bench --input-rate 0.1", "--input-rate requires --config"},
        {"bench --config '{\"num_input\": 3, \"num_output\": 1}' --input-rate 1.5",
         "--input-rate': expected a chance per channel and step in [0, 1]"},
        {"bench --config '{\"num_input\": 3, \"num_output\": 1}' --input-rate -0.1", "--input-rate"},
        {"bench --config '{\"num_input\": 3, \"num_output\": 1}' --input onehot --input-rate 0.1",
         "none for onehot input"},
        {"run model.safetensors --threads -1", "--threads: expected 0 or more, got '-1'"},
        {"eval --threads -1", "--threads: expected 0 or more, got '-1'"},
        {"simulate --config c.json --out o --workers 0", "--workers: expected more than 0, got '0'"}};
    for (const auto& [args, message] : cases) {
        const auto r = run_cli(args);
        EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
        EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
        EXPECT_EQ(r.output.find("measuring"), std::string::npos) << args << "\n" << r.output;
    }
}

// Runs the command that `args` makes of an output folder that cannot be created (under a regular file): it
// must fail with status 2 naming that folder, before the work starts (`absent`, a sign of the work, is not in
// the output).
void expect_output_folder_refused(const std::function<std::string(const std::string&)>& args,
                                  const std::string& absent) {
    const auto dir = temp_dir();
    const auto file = dir / "a_file";
    std::ofstream(file) << "x";
    const auto bad = (file / "out").string();
    const auto r = run_cli(args(bad));
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find(bad), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("expected a folder that exists or can be created"), std::string::npos)
        << r.output;
    EXPECT_EQ(r.output.find(absent), std::string::npos) << r.output;
    fs::remove_all(dir);
}

// simulate's --out is made and checked before the NEURON generator starts (it used to end in a Python
// traceback from the generator).
TEST(cli, simulate_checks_its_output_folder_first) {
    expect_output_folder_refused(
        [](const std::string& bad) {
            return "simulate --config " + std::string(ELM_TEST_DATA_DIR) +
                   "/../../configs/quickstart/simulate_train.json --out " + bad + " --workers 1";
        },
        "Traceback");
}

// --scaling's folder is made and checked before the sweep (a bad one failed after it, as an internal error).
TEST(cli, bench_scaling_checks_its_folder_before_measuring) {
    expect_output_folder_refused(
        [](const std::string& bad) {
            return "bench --scaling " + bad + " --repeats 1 --min-time 0 --threads 1";
        },
        "points");  // no sweep progress
}

TEST(cli, bench_checks_its_json_output_before_measuring) {
    // A --json path that cannot be written is an error at the start: nothing is measured (no peak, no table).
    const auto dir = temp_dir();
    for (const std::string& bad : {std::string("/no/such/folder/bench.json"), dir.string()}) {
        const auto r =
            run_cli("bench --json " + bad + " --shape neuronio_branch_elm_dm15 --repeats 1 --min-time 0");
        EXPECT_EQ(r.status, 2) << r.output;
        EXPECT_NE(r.output.find(bad), std::string::npos) << r.output;
        EXPECT_NE(r.output.find("writable folder"), std::string::npos) << r.output;
        EXPECT_EQ(r.output.find("measuring"), std::string::npos) << r.output;
        EXPECT_EQ(r.output.find("infer ms"), std::string::npos) << r.output;
    }
    fs::remove_all(dir);
}

TEST(cli, bench_scaling_writes_csv_json_and_plot) {
    const auto dir = temp_dir() / "scaling";
    const auto r = run_cli("bench --scaling " + dir.string() + " --repeats 1 --min-time 0 --threads 1");
    ASSERT_EQ(r.status, 0) << r.output;
    std::ifstream csv(dir / "scaling.csv");
    std::string header, line;
    std::getline(csv, header);
    EXPECT_EQ(header.rfind("factor,value,batch,time,num_memory,num_synapse", 0), 0u) << header;
    std::map<std::string, int> per_factor;
    while (std::getline(csv, line)) ++per_factor[line.substr(0, line.find(','))];
    EXPECT_EQ(per_factor["batch"], 8);
    EXPECT_EQ(per_factor["time"], 6);
    EXPECT_EQ(per_factor["num_memory"], 9);
    EXPECT_EQ(per_factor["num_synapse"], 5);
    EXPECT_TRUE(fs::exists(dir / "scaling.json"));
    EXPECT_GT(fs::file_size(dir / "scaling.png"), 10000u);  // a real plot, not an empty file
    fs::remove_all(dir.parent_path());
}

}  // namespace
