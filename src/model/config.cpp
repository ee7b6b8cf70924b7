// Model configuration: published constructor keywords and defaults (reference/paper.md §1, golden/README.md),
// validated key by key so that a typo in a config file is an error, never a silently ignored option.

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>

#include <nlohmann/json.hpp>

#include "io/io_detail.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

namespace elm {
namespace {

using json = nlohmann::json;

std::string src(std::string_view s) { return std::string(s); }

int get_int(const json& j, const char* key, std::string_view source, int min_value) {
    const json& v = j.at(key);
    if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
        throw error(src(source), key, "an integer", v.dump());
    const double d = v.get<double>();
    if (d < min_value || d > 1e9)
        throw error(src(source), key, "an integer >= " + std::to_string(min_value), v.dump());
    return static_cast<int>(d);
}

double get_number(const json& j, const char* key, std::string_view source) {
    const json& v = j.at(key);
    if (!v.is_number()) throw error(src(source), key, "a number", v.dump());
    const double d = v.get<double>();
    if (!std::isfinite(d)) throw error(src(source), key, "a finite number", v.dump());
    return d;
}

bool get_bool(const json& j, const char* key, std::string_view source) {
    const json& v = j.at(key);
    if (!v.is_boolean()) throw error(src(source), key, "true or false", v.dump());
    return v.get<bool>();
}

}  // namespace

const char* to_string(model_version v) { return v == model_version::v1 ? "v1" : "v2"; }
const char* to_string(activation a) { return a == activation::relu ? "relu" : "silu"; }
const char* to_string(routing r) {
    switch (r) {
        case routing::none:
            return "none";
        case routing::random:
            return "random_routing";
        case routing::neuronio:
            return "neuronio_routing";
    }
    return "none";
}

double model_config::effective_tau_max() const {
    // expressive_leaky_memory_neuron_v2.py: memory_tau_max = max(memory_tau_min + 3e-6, memory_tau_max).
    return version == model_version::v2 ? std::max(memory_tau_min + 3e-6, memory_tau_max) : memory_tau_max;
}

void model_config::validate(std::string_view source) const {
    auto fail = [&](const char* field, const std::string& expected, const std::string& got) {
        throw error(src(source), field, expected, got);
    };
    if (num_input < 1) fail("num_input", ">= 1", std::to_string(num_input));
    if (num_output < 1) fail("num_output", ">= 1", std::to_string(num_output));
    if (num_memory < 1) fail("num_memory", ">= 1", std::to_string(num_memory));
    if (mlp_num_layers < 0) fail("mlp_num_layers", ">= 0", std::to_string(mlp_num_layers));
    if (mlp_hidden_size < 0)
        fail("mlp_hidden_size", ">= 1 (or 0 or null for 2*num_memory)", std::to_string(mlp_hidden_size));
    if (num_branch < 0) fail("num_branch", ">= 1 (or null for num_input)", std::to_string(num_branch));
    if (num_synapse_per_branch < 1)
        fail("num_synapse_per_branch", ">= 1", std::to_string(num_synapse_per_branch));
    // Sizes are ints: the synapses (num_branch x num_synapse_per_branch) and each weight matrix must fit one.
    constexpr std::int64_t most = std::numeric_limits<int>::max();
    if (static_cast<std::int64_t>(branches()) * num_synapse_per_branch > most)
        fail("num_synapse_per_branch",
             "num_branch x num_synapse_per_branch <= " + std::to_string(most) + " synapses",
             std::to_string(branches()) + " x " + std::to_string(num_synapse_per_branch));
    const std::int64_t widest_in = std::max<std::int64_t>(mlp_input_size(), hidden_size());
    if (static_cast<std::int64_t>(std::max(hidden_size(), num_memory)) * widest_in > most ||
        static_cast<std::int64_t>(num_output) * num_memory > most)
        fail("mlp_hidden_size", "weight matrices of at most " + std::to_string(most) + " entries",
             std::to_string(hidden_size()) + " hidden units on " + std::to_string(widest_in) + " inputs");
    // Every real setting must fit float32, whose parameters and arithmetic the published model uses (1e39
    // would become inf there, and the outputs NaN).
    for (const auto& [field, value] : {std::pair{"delta_t", delta_t},
                                       {"tau_s_value", tau_s_value},
                                       {"lambda_value", lambda_value},
                                       {"memory_tau_min", memory_tau_min},
                                       {"memory_tau_max", memory_tau_max},
                                       {"memory_tau_init_min", tau_init_min()},
                                       {"memory_tau_init_max", tau_init_max()},
                                       {"w_s_value", w_s_value}})
        if (!(std::abs(value) <= std::numeric_limits<float>::max()))
            fail(field, "a finite number within float32's range (|x| <= 3.4e38)", std::to_string(value));
    if (!(delta_t > 0)) fail("delta_t", "> 0 (ms between inputs)", std::to_string(delta_t));
    // τ = 0 is the published clamp's κ = exp(-Δt/1e-6) = 0 (no trace memory); λ = 0 a memory that never
    // changes (v1 gain λ(1-κ_m) = 0; v2 κ_λ = 1): degenerate, but what the published code runs.
    if (!(tau_s_value >= 0)) fail("tau_s_value", ">= 0 ms", std::to_string(tau_s_value));
    if (!(lambda_value >= 0)) fail("lambda_value", ">= 0", std::to_string(lambda_value));
    if (!(memory_tau_min >= 0)) fail("memory_tau_min", ">= 0 ms", std::to_string(memory_tau_min));
    // inverse_scaled_sigmoid clamps to [min + 1e-6, max - 1e-6]; the interval must not be empty.
    if (!(effective_tau_max() > memory_tau_min + 2e-6))
        fail("memory_tau_max", "> memory_tau_min + 2e-6 = " + std::to_string(memory_tau_min + 2e-6),
             std::to_string(memory_tau_max));
    if (!(tau_init_min() >= memory_tau_min && tau_init_min() <= effective_tau_max()))
        fail("memory_tau_init_min", "within [memory_tau_min, memory_tau_max]",
             std::to_string(tau_init_min()));
    if (!(tau_init_max() >= tau_init_min() && tau_init_max() <= effective_tau_max()))
        fail("memory_tau_init_max", "within [memory_tau_init_min, memory_tau_max]",
             std::to_string(tau_init_max()));
    if (input_to_synapse_routing == routing::none && num_synapse() != num_input)
        fail("input_to_synapse_routing",
             "a routing when num_branch*num_synapse_per_branch (" + std::to_string(num_synapse()) +
                 ") != num_input (" + std::to_string(num_input) + ")",
             "null");
    if (input_to_synapse_routing == routing::neuronio) {
        const int stride = (num_input + branches() - 1) / branches();
        if (stride > num_synapse_per_branch)
            fail("num_synapse_per_branch",
                 ">= ceil(num_input/num_branch) = " + std::to_string(stride) + " for neuronio_routing",
                 std::to_string(num_synapse_per_branch));
    }
}

std::span<const std::string_view> model_config_keys() {
    static constexpr std::string_view keys[] = {"num_input",
                                                "num_output",
                                                "num_memory",
                                                "lambda_value",
                                                "mlp_num_layers",
                                                "mlp_hidden_size",
                                                "mlp_activation",
                                                "tau_s_value",
                                                "tau_b_value",
                                                "memory_tau_min",
                                                "memory_tau_max",
                                                "memory_tau_init_min",
                                                "memory_tau_init_max",
                                                "learn_memory_tau",
                                                "learn_w_s",
                                                "w_s_value",
                                                "num_branch",
                                                "num_synapse_per_branch",
                                                "input_to_synapse_routing",
                                                "delta_t",
                                                "model_version"};
    return keys;
}

bool is_note_key(std::string_view key) { return key.starts_with('_'); }

model_config parse_model_config(std::string_view json_text, std::string_view source, model_version fallback) {
    const json j = detail::parse_json_strict(json_text, src(source), "(JSON)", detail::max_config_depth);
    if (!j.is_object()) throw error(src(source), "(top level)", "a JSON object of model settings", j.dump());

    const auto known = model_config_keys();
    for (const auto& [key, value] : j.items())
        if (!is_note_key(key) && std::find(known.begin(), known.end(), key) == known.end())
            throw error(src(source), key, "a known model setting", "unknown key",
                        "model keys are the published ELM constructor arguments, e.g. num_memory");

    model_config c;
    c.version = fallback;
    if (j.contains("model_version")) {
        const json& v = j["model_version"];
        if (v == "v1")
            c.version = model_version::v1;
        else if (v == "v2")
            c.version = model_version::v2;
        else
            throw error(src(source), "model_version", "\"v1\" or \"v2\"", v.dump());
    }
    for (const char* key : {"num_input", "num_output"})
        if (!j.contains(key)) throw error(src(source), key, "present (no default)", "missing");
    c.num_input = get_int(j, "num_input", source, 1);
    c.num_output = get_int(j, "num_output", source, 1);
    if (j.contains("num_memory")) c.num_memory = get_int(j, "num_memory", source, 1);
    if (j.contains("lambda_value")) c.lambda_value = get_number(j, "lambda_value", source);
    if (j.contains("mlp_num_layers")) c.mlp_num_layers = get_int(j, "mlp_num_layers", source, 0);
    if (j.contains("mlp_hidden_size") && !j["mlp_hidden_size"].is_null())
        c.mlp_hidden_size = get_int(j, "mlp_hidden_size", source, 0);  // published: 0 (falsy) = 2·num_memory
    if (j.contains("mlp_activation")) {
        const json& v = j["mlp_activation"];
        if (v == "relu")
            c.mlp_activation = activation::relu;
        else if (v == "silu")
            c.mlp_activation = activation::silu;
        else
            throw error(src(source), "mlp_activation", "\"relu\" or \"silu\"", v.dump());
    }
    if (j.contains("tau_s_value") && j.contains("tau_b_value"))
        throw error(src(source), "tau_b_value", "only one of tau_s_value (v1) / tau_b_value (v2)", "both");
    if (j.contains("tau_s_value")) c.tau_s_value = get_number(j, "tau_s_value", source);
    if (j.contains("tau_b_value")) c.tau_s_value = get_number(j, "tau_b_value", source);
    if (j.contains("memory_tau_min")) c.memory_tau_min = get_number(j, "memory_tau_min", source);
    if (j.contains("memory_tau_max")) c.memory_tau_max = get_number(j, "memory_tau_max", source);
    if (j.contains("memory_tau_init_min") && !j["memory_tau_init_min"].is_null())
        c.memory_tau_init_min = get_number(j, "memory_tau_init_min", source);
    if (j.contains("memory_tau_init_max") && !j["memory_tau_init_max"].is_null())
        c.memory_tau_init_max = get_number(j, "memory_tau_init_max", source);
    if (j.contains("learn_memory_tau")) c.learn_memory_tau = get_bool(j, "learn_memory_tau", source);
    if (j.contains("learn_w_s")) c.learn_w_s = get_bool(j, "learn_w_s", source);
    if (j.contains("w_s_value")) c.w_s_value = get_number(j, "w_s_value", source);
    if (j.contains("num_branch") && !j["num_branch"].is_null())
        c.num_branch = get_int(j, "num_branch", source, 1);
    if (j.contains("num_synapse_per_branch"))
        c.num_synapse_per_branch = get_int(j, "num_synapse_per_branch", source, 1);
    if (j.contains("input_to_synapse_routing")) {
        const json& v = j["input_to_synapse_routing"];
        if (v.is_null() || v == "none")
            c.input_to_synapse_routing = routing::none;
        else if (v == "random_routing")
            c.input_to_synapse_routing = routing::random;
        else if (v == "neuronio_routing")
            c.input_to_synapse_routing = routing::neuronio;
        else
            throw error(src(source), "input_to_synapse_routing",
                        "null, \"random_routing\" or \"neuronio_routing\"", v.dump());
    }
    if (j.contains("delta_t")) c.delta_t = get_number(j, "delta_t", source);
    c.validate(source);
    return c;
}

std::string to_json(const model_config& c) {
    json j;
    j["model_version"] = to_string(c.version);
    j["num_input"] = c.num_input;
    j["num_output"] = c.num_output;
    j["num_memory"] = c.num_memory;
    j["lambda_value"] = c.lambda_value;
    j["mlp_num_layers"] = c.mlp_num_layers;
    j["mlp_hidden_size"] = c.hidden_size();
    j["mlp_activation"] = to_string(c.mlp_activation);
    j[c.version == model_version::v1 ? "tau_s_value" : "tau_b_value"] = c.tau_s_value;
    j["memory_tau_min"] = c.memory_tau_min;
    j["memory_tau_max"] = c.memory_tau_max;
    if (c.memory_tau_init_min) j["memory_tau_init_min"] = *c.memory_tau_init_min;
    if (c.memory_tau_init_max) j["memory_tau_init_max"] = *c.memory_tau_init_max;
    j["learn_memory_tau"] = c.learn_memory_tau;
    j["learn_w_s"] = c.learn_w_s;
    j["w_s_value"] = c.w_s_value;
    j["num_branch"] = c.branches();
    j["num_synapse_per_branch"] = c.num_synapse_per_branch;
    if (c.input_to_synapse_routing == routing::none)
        j["input_to_synapse_routing"] = nullptr;
    else
        j["input_to_synapse_routing"] = to_string(c.input_to_synapse_routing);
    j["delta_t"] = c.delta_t;
    return j.dump(2);
}

std::int64_t count_trainable_parameters(const model_config& c) {
    // reference/paper.md §1.8: w_s + MLP + readout (+ τ_m when learned).
    const std::int64_t d_in = c.mlp_input_size(), h = c.hidden_size(), d_m = c.num_memory, d_o = c.num_output;
    std::int64_t mlp = 0;
    if (c.mlp_num_layers == 0) {
        mlp = d_in * d_m + d_m;
    } else {
        mlp = d_in * h + h + (c.mlp_num_layers - 1) * (h * h + h) + h * d_m + d_m;
    }
    std::int64_t n = mlp + d_m * d_o + d_o;
    if (c.learn_w_s) n += c.num_synapse();
    if (c.learn_memory_tau) n += d_m;
    return n;
}

}  // namespace elm
