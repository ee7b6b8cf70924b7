// The elmneuron CLI as a user runs it: `info` counts equal every official model's model_stats.json,
// `convert` + `run` reproduce the published outputs of the pretrained golden cases, bad input exits 2
// with a message naming the file.

#include <elmneuron/tensor_file.hpp>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>
#include <string>

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
    fs::remove_all(dir);
}

}  // namespace
