// ModelConfig: the published PyTorch constructor's keyword arguments (config.hpp), checked at
// construction; JSON and dict round trips use the library's parser, so the rules are the CLI's.

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>

#include "common.hpp"

namespace elm::py {
namespace {

using namespace pybind11::literals;

elm::model_config make_config(int num_input, int num_output, int num_memory, double lambda_value,
                              int mlp_num_layers, std::optional<int> mlp_hidden_size,
                              const std::string& mlp_activation, std::optional<double> tau_s_value,
                              std::optional<double> tau_b_value, double memory_tau_min, double memory_tau_max,
                              std::optional<double> memory_tau_init_min,
                              std::optional<double> memory_tau_init_max, bool learn_memory_tau,
                              bool learn_w_s, double w_s_value, std::optional<int> num_branch,
                              int num_synapse_per_branch,
                              const std::optional<std::string>& input_to_synapse_routing, double delta_t,
                              const std::string& model_version) {
    const char* src = "ModelConfig";
    elm::model_config c;
    if (model_version == "v1")
        c.version = elm::model_version::v1;
    else if (model_version == "v2")
        c.version = elm::model_version::v2;
    else
        throw elm::error(src, "model_version", "\"v1\" or \"v2\"", "\"" + model_version + "\"");
    c.num_input = num_input;
    c.num_output = num_output;
    c.num_memory = num_memory;
    c.lambda_value = lambda_value;
    c.mlp_num_layers = mlp_num_layers;
    if (mlp_hidden_size) {
        if (*mlp_hidden_size < 1)
            throw elm::error(src, "mlp_hidden_size", ">= 1 (or None for 2*num_memory)",
                             std::to_string(*mlp_hidden_size));
        c.mlp_hidden_size = *mlp_hidden_size;
    }
    if (mlp_activation == "relu")
        c.mlp_activation = elm::activation::relu;
    else if (mlp_activation == "silu")
        c.mlp_activation = elm::activation::silu;
    else
        throw elm::error(src, "mlp_activation", "\"relu\" or \"silu\"", "\"" + mlp_activation + "\"");
    if (tau_s_value && tau_b_value)
        throw elm::error(src, "tau_b_value", "only one of tau_s_value (v1) / tau_b_value (v2)", "both");
    if (tau_s_value) c.tau_s_value = *tau_s_value;
    if (tau_b_value) c.tau_s_value = *tau_b_value;
    c.memory_tau_min = memory_tau_min;
    c.memory_tau_max = memory_tau_max;
    c.memory_tau_init_min = memory_tau_init_min;
    c.memory_tau_init_max = memory_tau_init_max;
    c.learn_memory_tau = learn_memory_tau;
    c.learn_w_s = learn_w_s;
    c.w_s_value = w_s_value;
    if (num_branch) {
        if (*num_branch < 1)
            throw elm::error(src, "num_branch", ">= 1 (or None for num_input)", std::to_string(*num_branch));
        c.num_branch = *num_branch;
    }
    c.num_synapse_per_branch = num_synapse_per_branch;
    if (!input_to_synapse_routing || *input_to_synapse_routing == "none")
        c.input_to_synapse_routing = elm::routing::none;
    else if (*input_to_synapse_routing == "random_routing")
        c.input_to_synapse_routing = elm::routing::random;
    else if (*input_to_synapse_routing == "neuronio_routing")
        c.input_to_synapse_routing = elm::routing::neuronio;
    else
        throw elm::error(src, "input_to_synapse_routing", "None, \"random_routing\" or \"neuronio_routing\"",
                         "\"" + *input_to_synapse_routing + "\"");
    c.delta_t = delta_t;
    c.validate(src);
    return c;
}

std::string json_dumps(const pyb::handle& obj, const std::string& source) {
    // NaN and inf are no JSON (json.dumps would write the token NaN): named by their key here.
    if (pyb::isinstance<pyb::dict>(obj))
        for (const auto& [key, value] : pyb::reinterpret_borrow<pyb::dict>(obj))
            if (pyb::isinstance<pyb::float_>(value) && !std::isfinite(value.cast<double>()))
                throw elm::error(source, pyb::str(key).cast<std::string>(), "a finite number",
                                 pyb::repr(value).cast<std::string>());
    // numpy scalars (np.int64(8) from an array's shape or a sweep) as the Python numbers they hold.
    const pyb::cpp_function numpy_scalar([](const pyb::handle& o) -> pyb::object {
        if (pyb::hasattr(o, "item") && pyb::hasattr(o, "dtype")) return o.attr("item")();
        throw pyb::type_error("Object of type " + pyb::type::of(o).attr("__name__").cast<std::string>() +
                              " is not JSON serializable");
    });
    try {
        return pyb::module_::import("json")
            .attr("dumps")(obj, pyb::arg("allow_nan") = false, pyb::arg("default") = numpy_scalar)
            .cast<std::string>();
    } catch (const pyb::error_already_set& e) {
        const std::string what = e.what();  // its first line: pybind11 appends the Python traceback
        throw elm::error(source, "(config)", "a JSON-serialisable dict", what.substr(0, what.find('\n')));
    }
}

elm::model_version parse_version(const std::string& v, const char* source) {
    if (v == "v1") return elm::model_version::v1;
    if (v == "v2") return elm::model_version::v2;
    throw elm::error(source, "model_version", "\"v1\" or \"v2\"", "\"" + v + "\"");
}

pyb::object routing_name(const elm::model_config& c) {
    if (c.input_to_synapse_routing == elm::routing::none) return pyb::none();
    return pyb::str(elm::to_string(c.input_to_synapse_routing));
}

}  // namespace

pyb::object json_loads(const std::string& text) { return pyb::module_::import("json").attr("loads")(text); }

void register_config(pyb::module_& m) {
    pyb::class_<elm::model_config> cfg(
        m, "ModelConfig", R"(Model configuration: the published PyTorch ELM constructor's keyword arguments.

Same names and defaults as the published model (v1: ``ELM``, v2: ``ELM`` of the v2 module), plus the
paper's extensions (``memory_tau_init_min/max``, ``learn_w_s``) and ``model_version``. The values are
checked at construction; an invalid one raises elmneuron.Error naming the keyword.

Properties read back the values after defaults are applied (e.g. ``mlp_hidden_size`` = 2*num_memory
when given as None). ``tau_s_value`` (v1) and ``tau_b_value`` (v2) are two names of one setting.)");
    cfg.def(pyb::init(&make_config), "num_input"_a, "num_output"_a, "num_memory"_a = 100,
            "lambda_value"_a = 5.0, "mlp_num_layers"_a = 1, "mlp_hidden_size"_a = pyb::none(),
            "mlp_activation"_a = "relu", "tau_s_value"_a = pyb::none(), "tau_b_value"_a = pyb::none(),
            "memory_tau_min"_a = 1.0, "memory_tau_max"_a = 1000.0, "memory_tau_init_min"_a = pyb::none(),
            "memory_tau_init_max"_a = pyb::none(), "learn_memory_tau"_a = false, "learn_w_s"_a = true,
            "w_s_value"_a = 0.5, "num_branch"_a = pyb::none(), "num_synapse_per_branch"_a = 1,
            "input_to_synapse_routing"_a = pyb::none(), "delta_t"_a = 1.0, "model_version"_a = "v1");
    cfg.def_property_readonly("model_version",
                              [](const elm::model_config& c) { return elm::to_string(c.version); })
        .def_property_readonly("num_input", [](const elm::model_config& c) { return c.num_input; })
        .def_property_readonly("num_output", [](const elm::model_config& c) { return c.num_output; })
        .def_property_readonly("num_memory", [](const elm::model_config& c) { return c.num_memory; })
        .def_property_readonly("lambda_value", [](const elm::model_config& c) { return c.lambda_value; })
        .def_property_readonly("mlp_num_layers", [](const elm::model_config& c) { return c.mlp_num_layers; })
        .def_property_readonly("mlp_hidden_size", [](const elm::model_config& c) { return c.hidden_size(); })
        .def_property_readonly("mlp_activation",
                               [](const elm::model_config& c) { return elm::to_string(c.mlp_activation); })
        .def_property_readonly("tau_s_value", [](const elm::model_config& c) { return c.tau_s_value; })
        .def_property_readonly("tau_b_value", [](const elm::model_config& c) { return c.tau_s_value; })
        .def_property_readonly("memory_tau_min", [](const elm::model_config& c) { return c.memory_tau_min; })
        .def_property_readonly("memory_tau_max", [](const elm::model_config& c) { return c.memory_tau_max; })
        .def_property_readonly("memory_tau_init_min",
                               [](const elm::model_config& c) { return c.tau_init_min(); })
        .def_property_readonly("memory_tau_init_max",
                               [](const elm::model_config& c) { return c.tau_init_max(); })
        .def_property_readonly("learn_memory_tau",
                               [](const elm::model_config& c) { return c.learn_memory_tau; })
        .def_property_readonly("learn_w_s", [](const elm::model_config& c) { return c.learn_w_s; })
        .def_property_readonly("w_s_value", [](const elm::model_config& c) { return c.w_s_value; })
        .def_property_readonly("num_branch", [](const elm::model_config& c) { return c.branches(); })
        .def_property_readonly("num_synapse_per_branch",
                               [](const elm::model_config& c) { return c.num_synapse_per_branch; })
        .def_property_readonly("input_to_synapse_routing", &routing_name)
        .def_property_readonly("delta_t", [](const elm::model_config& c) { return c.delta_t; })
        .def_property_readonly("num_synapse", &elm::model_config::num_synapse,
                               "num_branch * num_synapse_per_branch")
        .def_property_readonly(
            "effective_tau_max", &elm::model_config::effective_tau_max,
            "Upper bound of tau_m in ms as the model uses it (v2 clamps it above memory_tau_min).")
        .def_property_readonly("num_trainable", &elm::count_trainable_parameters,
                               "Trainable parameter count of the published PyTorch model with this config.")
        .def(
            "to_json", [](const elm::model_config& c) { return elm::to_json(c); },
            "Every setting as JSON under the published names (readable by from_json and the CLI).")
        .def(
            "to_dict", [](const elm::model_config& c) { return json_loads(elm::to_json(c)); },
            "Every setting as a dict under the published names; ModelConfig(**d) rebuilds it.")
        .def_static(
            "from_json",
            [](const std::string& text, const std::string& source, const std::string& model_version) {
                return elm::parse_model_config(text, source,
                                               parse_version(model_version, "ModelConfig.from_json"));
            },
            "text"_a, "source"_a = "ModelConfig.from_json", "model_version"_a = "v1",
            "Parses a model_config.json text (published keys; unknown keys are errors). model_version "
            "applies when "
            "the text has no \"model_version\" key.")
        .def_static(
            "from_dict",
            [](const pyb::dict& d, const std::string& model_version) {
                return elm::parse_model_config(json_dumps(d, "ModelConfig.from_dict"),
                                               "ModelConfig.from_dict",
                                               parse_version(model_version, "ModelConfig.from_dict"));
            },
            "d"_a, "model_version"_a = "v1", "As from_json, from a dict of published keys.")
        .def(
            "__eq__",
            [](const elm::model_config& a, const elm::model_config& b) {
                return elm::to_json(a) == elm::to_json(b);
            },
            pyb::is_operator())
        .def("__repr__",
             [](const elm::model_config& c) {
                 // Keys in the published constructor's order.
                 const auto d = pyb::cast<pyb::dict>(json_loads(elm::to_json(c)));
                 std::string s = "ModelConfig(";
                 bool first = true;
                 for (const std::string_view name : elm::model_config_keys()) {
                     const std::string key(name);
                     if (!d.contains(key)) continue;
                     s.append(first ? "" : ", ").append(key).append("=").append(repr_of(d[key.c_str()]));
                     first = false;
                 }
                 return s + ")";
             })
        .def(pyb::pickle([](const elm::model_config& c) { return elm::to_json(c); },
                         [](const std::string& text) { return elm::parse_model_config(text, "pickle"); }));
    cfg.attr("__hash__") = pyb::none();
}

}  // namespace elm::py
