#pragma once
// The model configuration: the published PyTorch constructor's keyword arguments (same names, same
// defaults; reference/paper.md §1, docs/model.md), plus the paper's extensions that the published code
// lacks (decoupled τ_m initialisation range, fixed w_s). Parsed from and written to JSON so that the
// published model_config.json files load unchanged.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace elm {

enum class model_version { v1, v2 };  // v1: synapse traces, λ(1-κ_m); v2: branch traces, 1-κ_λ
enum class activation { relu, silu };
enum class routing { none, random, neuronio };  // published names: null, "random_routing", "neuronio_routing"

struct model_config {
    model_version version = model_version::v1;
    int num_input = 0;
    int num_output = 0;
    int num_memory = 100;
    double lambda_value = 5.0;
    int mlp_num_layers = 1;
    int mlp_hidden_size = 0;  // 0: the published default 2·num_memory
    activation mlp_activation = activation::relu;
    double tau_s_value = 5.0;  // v1 synapse τ_s / v2 branch τ_b (JSON key tau_s_value or tau_b_value), ms
    double memory_tau_min = 1.0;  // bounds of τ_m through the scaled sigmoid (§1.4), ms
    double memory_tau_max = 1000.0;
    std::optional<double> memory_tau_init_min;  // paper: init range may differ from bounds; default = bounds
    std::optional<double> memory_tau_init_max;
    bool learn_memory_tau = false;
    bool learn_w_s = true;  // published code trains w_s always; the paper freezes it for vanilla ELM
    double w_s_value = 0.5;
    int num_branch = 0;  // 0: the published default num_input
    int num_synapse_per_branch = 1;
    routing input_to_synapse_routing = routing::none;
    double delta_t = 1.0;  // ms between inputs

    // Derived sizes (after defaults are applied).
    int hidden_size() const { return mlp_hidden_size > 0 ? mlp_hidden_size : 2 * num_memory; }
    int branches() const { return num_branch > 0 ? num_branch : num_input; }
    int num_synapse() const { return branches() * num_synapse_per_branch; }
    int mlp_input_size() const { return branches() + num_memory; }
    // v2 clamps the upper bound (published: max(tau_min + 3e-6, tau_max)); v1 uses it unchanged.
    double effective_tau_max() const;
    double tau_init_min() const { return memory_tau_init_min.value_or(memory_tau_min); }
    double tau_init_max() const { return memory_tau_init_max.value_or(effective_tau_max()); }

    // Throws elm::error (file = source) if sizes or ranges are inconsistent.
    void validate(std::string_view source) const;

    bool operator==(const model_config&) const = default;
};

// Keys that start with '_' ("_comment": "...") are notes in every config file of the project (model, run and
// simulate configs, at any level): ignored, never an unknown key. A typo of a setting never starts with '_'.
bool is_note_key(std::string_view key);

// Parses JSON text with the published keys; every unknown key (notes aside), wrong type or invalid value is
// an error naming `source` and the key. `version` is taken from the key "model_version" if present, else
// `fallback`.
model_config parse_model_config(std::string_view json_text, std::string_view source,
                                model_version fallback = model_version::v1);
// Config as JSON (published names; tau_s_value or tau_b_value by version, the init range only when set),
// parseable by parse_model_config.
std::string to_json(const model_config& config);
// The keys parse_model_config knows: the published ELM constructor's arguments in its order, then
// "model_version" (ours).
std::span<const std::string_view> model_config_keys();

const char* to_string(model_version v);
const char* to_string(activation a);
const char* to_string(routing r);  // "none", "random_routing", "neuronio_routing"

// Published parameter count (reference/paper.md §1.8): trainable parameters of the PyTorch model.
std::int64_t count_trainable_parameters(const model_config& config);

}  // namespace elm
