// elmneuron run MODEL --input FILE --output FILE: forward pass over a [B, T, num_input] (or [T, num_input])
// array from .npy or .safetensors; writes the [B, T, num_output] output (or [T, num_output]; optionally the
// state traces) as .npy or .safetensors, atomically.

#include <elmneuron/error.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/tensor_file.hpp>

#include "commands.hpp"
#include "common.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

namespace elm::cli {
namespace {

struct run_options {
    std::string model, input, output, tensor_name, precision = "f32";
    bool traces = false, synapse_traces = false;
    int threads = 0;
};

bool is_npy(const std::string& p) { return std::filesystem::path(p).extension() == ".npy"; }

tensor read_input(const run_options& o) {
    if (is_npy(o.input)) return read_npy(o.input);
    const auto f = read_safetensors(o.input);
    if (!o.tensor_name.empty()) return f.at(o.tensor_name);
    if (const auto* t = f.find("input")) return *t;
    if (f.tensors.size() == 1) return f.tensors.front();
    throw error(o.input, "(tensor)", "a tensor named 'input', a single tensor, or --tensor NAME",
                std::to_string(f.tensors.size()) + " tensors and none named 'input'");
}

template <class T>
void run(const run_options& o) {
    const auto m = load_model<T>(o.model);
    const auto& c = m.config();
    if (o.synapse_traces && c.version != model_version::v1)
        throw error(o.model, "--synapse-traces", "a v1 model (v2 keeps branch traces only)", "a v2 model");
    const bool traces = o.traces || o.synapse_traces;
    const bool npy_out = is_npy(o.output);
    if (!npy_out && std::filesystem::path(o.output).extension() != ".safetensors")
        throw error(o.output, "--output", "a .npy or .safetensors file name",
                    "'" + std::filesystem::path(o.output).extension().string() + "'");
    check_output_file(o.output, {o.model, o.input});
    const tensor in = read_input(o);
    auto shape = in.shape;
    if (shape.size() == 2) shape.insert(shape.begin(), 1);
    if (shape.size() != 3 || shape[2] != c.num_input)
        throw error(
            o.input, in.name.empty() ? "input" : in.name,
            "shape [B, T, " + std::to_string(c.num_input) + "] or [T, " + std::to_string(c.num_input) + "]",
            "rank " + std::to_string(in.shape.size()) + " with last dimension " +
                (in.shape.empty() ? std::string("-") : std::to_string(in.shape.back())));
    const int B = static_cast<int>(shape[0]), Tn = static_cast<int>(shape[1]);
    // Outputs and traces are held whole and once more as the written file; the forward keeps its
    // activations (about the MLP's widths per step) for the memory trace.
    const double steps = static_cast<double>(B) * Tn;
    double per_step = c.num_output;
    if (traces) per_step += c.num_memory + c.branches() + 2.0 * (c.hidden_size() + c.num_memory);
    if (o.synapse_traces) per_step += c.num_synapse();
    check_memory(2 * steps * per_step * sizeof(T), o.input,
                 o.synapse_traces ? "--synapse-traces"
                 : traces         ? "--traces"
                                  : "input",
                 std::to_string(B) + " x " + std::to_string(Tn) + " steps of outputs" +
                     (o.synapse_traces ? ", memory, branch and synapse traces"
                      : traces         ? " and memory and branch traces"
                                       : ""));
    const auto x = sparse_from_dense<T>(in.to<T>(), B, Tn, c.num_input, o.input);

    std::vector<T> y(static_cast<std::size_t>(B) * Tn * c.num_output);
    workspace<T> ws;
    const auto t0 = std::chrono::steady_clock::now();
    if (traces)
        m.forward(x, y, ws);  // keeps the memory trace
    else
        m.infer(x, y, ws);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto not_finite =
        std::count_if(y.begin(), y.end(), [](T v) { return !std::isfinite(static_cast<double>(v)); });
    if (not_finite > 0)
        std::fprintf(stderr,
                     "warning: %lld of %zu outputs are not finite (NaN or inf): the model's weights or "
                     "settings overflow %s arithmetic%s\n",
                     static_cast<long long>(not_finite), y.size(),
                     o.precision == "f32" ? "float32" : "float64",
                     o.precision == "f32" ? "; try --precision f64" : "");

    // Shaped as the input: [T, ·] for a [T, num_input] input.
    const auto shaped = [&](std::int64_t width) {
        return in.shape.size() == 2 ? std::vector<std::int64_t>{Tn, width}
                                    : std::vector<std::int64_t>{B, Tn, width};
    };
    const tensor out = make_tensor<T>("output", shaped(c.num_output), y);
    if (npy_out) {
        if (traces)
            throw error(o.output, "--traces", "a .safetensors output (traces are several tensors)", ".npy");
        write_npy(o.output, out);
    } else {
        tensor_file f;
        f.metadata["model"] = o.model;
        f.metadata["config"] = to_json(c);
        f.tensors.push_back(out);
        if (traces) {
            f.tensors.push_back(make_tensor<T>("trace.memory", shaped(c.num_memory), m.memory_trace(ws)));
            std::vector<T> branch(static_cast<std::size_t>(B) * Tn * c.branches());
            m.branch_trace(x, branch);
            f.tensors.push_back(make_tensor<T>("trace.branch", shaped(c.branches()), branch));
            if (o.synapse_traces) {  // v1's state (golden/README.md); B·T·num_synapse values, so on request
                std::vector<T> synapse(static_cast<std::size_t>(B) * Tn * c.num_synapse());
                m.synapse_trace(x, synapse);
                f.tensors.push_back(make_tensor<T>("trace.synapse", shaped(c.num_synapse()), synapse));
            }
        }
        write_safetensors(o.output, f);
    }
    std::fprintf(stderr, "%d x %d steps (%zu input events) in %.3f s (%.3g sample-steps/s); wrote %s\n", B,
                 Tn, x.num_events(), seconds, B * static_cast<double>(Tn) / seconds, o.output.c_str());
}

}  // namespace

void register_run(CLI::App& app) {
    auto* cmd = app.add_subcommand("run", "Run a model forward on an input array");
    static run_options o;
    cmd->add_option("model", o.model, "Model: .safetensors, zoo folder or .pt")->required();
    cmd->add_option("-i,--input", o.input, "Input .npy or .safetensors, [B, T, num_input] or [T, num_input]")
        ->required();
    cmd->add_option(
           "-o,--output", o.output,
           "Output .npy or .safetensors (tensor 'output', [B, T, num_output], or [T, num_output] for a "
           "[T, num_input] input)")
        ->required();
    cmd->add_option("--tensor", o.tensor_name, "Input tensor name inside a .safetensors (default: 'input')");
    cmd->add_option("--precision", o.precision, "Compute precision")->check(CLI::IsMember({"f32", "f64"}));
    cmd->add_flag("--traces", o.traces, "Also write trace.memory and trace.branch (safetensors output only)");
    cmd->add_flag("--synapse-traces", o.synapse_traces,
                  "Traces with trace.synapse of a v1 model too (num_synapse values per step: large)");
    cmd->add_option("--threads", o.threads, "Threads (default or 0: all cores)")
        ->check(non_negative_number());
    cmd->callback([] {
        set_num_threads(o.threads);
        if (o.precision == "f32")
            run<float>(o);
        else
            run<double>(o);
    });
}

}  // namespace elm::cli
