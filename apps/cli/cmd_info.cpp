// elmneuron info MODEL: configuration, parameter tensors and the trainable-parameter count
// (reference/paper.md §1.8); for an official zoo folder also the published model_stats.json count.

#include <elmneuron/config.hpp>
#include <elmneuron/model_file.hpp>

#include <nlohmann/json.hpp>

#include "commands.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace elm::cli {

void register_info(CLI::App& app) {
    auto* cmd = app.add_subcommand("info", "Show a model's configuration and parameter count");
    static std::string path;
    static bool as_json = false;
    cmd->add_option(
           "model", path,
           "Model: our .safetensors, an official zoo folder, or a .pt with model_config.json beside it")
        ->required();
    cmd->add_flag("--json", as_json, "Print one JSON object instead of a table");
    cmd->callback([] {
        const auto m = load_model<double>(path);
        const auto& c = m.config();
        const auto count = count_trainable_parameters(c);
        // Official folders carry the published count; show it beside ours so a mismatch is visible.
        std::int64_t published = -1;
        const auto stats = std::filesystem::path(path) / "model_stats.json";
        if (std::filesystem::is_directory(path) && std::filesystem::exists(stats)) {
            std::ifstream in(stats);
            const auto j = nlohmann::json::parse(in, nullptr, false);
            if (j.is_object() && j.contains("model_param_count") &&
                j["model_param_count"].is_number_integer())
                published = j["model_param_count"].get<std::int64_t>();
        }
        if (as_json) {
            nlohmann::json j;
            j["model"] = path;
            j["config"] = nlohmann::json::parse(to_json(c));
            j["trainable_parameters"] = count;
            if (published >= 0) j["published_parameter_count"] = published;
            for (const auto& p : m.layout())
                j["parameters"].push_back({{"name", p.name}, {"shape", p.shape}, {"trainable", p.trainable}});
            std::printf("%s\n", j.dump(2).c_str());
            return;
        }
        std::printf("model              %s\n", path.c_str());
        std::printf("version            %s (%s memory update)\n", to_string(c.version),
                    c.version == model_version::v1 ? "lambda*(1-kappa_m)" : "1-kappa_lambda");
        std::printf("inputs / outputs   %d / %d\n", c.num_input, c.num_output);
        std::printf("branches x syn.    %d x %d (%d synapses, routing %s)\n", c.branches(),
                    c.num_synapse_per_branch, c.num_synapse(), to_string(c.input_to_synapse_routing));
        std::printf("memory units       %d (tau_m %g..%g ms, %s)\n", c.num_memory, c.memory_tau_min,
                    c.effective_tau_max(), c.learn_memory_tau ? "learned" : "fixed");
        std::printf("MLP                %d hidden layer(s) of %d, %s\n", c.mlp_num_layers, c.hidden_size(),
                    to_string(c.mlp_activation));
        std::printf("lambda, delta_t    %g, %g ms\n", c.lambda_value, c.delta_t);
        std::printf("\n%-28s %-14s %s\n", "parameter", "shape", "trainable");
        for (const auto& p : m.layout()) {
            std::string shape;
            for (auto s : p.shape) shape += (shape.empty() ? "" : "x") + std::to_string(s);
            std::printf("%-28s %-14s %s\n", p.name.c_str(), shape.c_str(), p.trainable ? "yes" : "no");
        }
        std::printf("\ntrainable parameters  %lld\n", static_cast<long long>(count));
        if (published >= 0)
            std::printf("published count       %lld (model_stats.json) %s\n",
                        static_cast<long long>(published), published == count ? "- equal" : "- DIFFERENT");
    });
}

}  // namespace elm::cli
