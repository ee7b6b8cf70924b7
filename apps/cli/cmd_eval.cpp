// elmneuron eval: the published NeuronIO evaluation protocol (reference/paper.md §5) of a model on simulation
// files, writing eval_results.json (published keys), roc.csv, an example-traces file and PNG plots.
// elmneuron predict: the stitched full-length predictions of each file, as safetensors.

#include <elmneuron/error.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/neuronio.hpp>
#include <elmneuron/neuronio_task.hpp>
#include <elmneuron/tensor_file.hpp>

#include "commands.hpp"
#include "common.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace elm::cli {
namespace {

namespace fs = std::filesystem;

struct eval_options {
    std::string model, out = "eval", split = "test", cache, precision = "f32";
    std::vector<std::string> data;
    neuronio_eval_options protocol;
    int threads = 0;
    bool no_plots = false;
};

// Input raster and traces of one simulation, for the example-traces plot.
void write_example(const std::string& path, const neuronio_file& file, const neuronio_predictions& p,
                   int sim) {
    const auto& s = file.simulations[static_cast<std::size_t>(sim)];
    std::vector<float> value(s.event_channel.size());
    for (std::size_t e = 0; e < value.size(); ++e)
        value[e] = neuronio_synapse_sign(s.event_channel[e], file.num_segments);
    const std::size_t row = static_cast<std::size_t>(sim) * p.duration_ms,
                      D = static_cast<std::size_t>(p.duration_ms);
    auto slice = [&](const std::vector<double>& v) {
        return std::vector<double>(v.begin() + row, v.begin() + row + D);
    };
    tensor_file f;
    f.metadata["title"] = fs::path(file.source).filename().string() + ", simulation " + std::to_string(sim);
    const auto n = static_cast<std::int64_t>(value.size());
    f.tensors.push_back(make_tensor<std::int32_t>("event_time", {n}, s.event_time));
    f.tensors.push_back(make_tensor<std::int32_t>("event_channel", {n}, s.event_channel));
    f.tensors.push_back(make_tensor<float>("event_value", {n}, value));
    const auto d = static_cast<std::int64_t>(D);
    f.tensors.push_back(make_tensor<double>("soma_true", {d}, slice(p.soma_true_mv)));
    f.tensors.push_back(make_tensor<double>("soma_pred", {d}, slice(p.soma_pred_mv)));
    f.tensors.push_back(make_tensor<double>("spike_true", {d}, slice(p.spike_true)));
    f.tensors.push_back(make_tensor<double>("spike_prob", {d}, slice(p.spike_prob)));
    write_safetensors(path, f);
}

// The model of eval and predict: the protocol reads output 0 as the spike logit and output 1 as the soma.
template <class T>
model<T> load_neuronio_model(const eval_options& o) {
    auto m = load_model<T>(o.model);
    if (m.config().num_output < 2)
        throw error(o.model, "num_output", "at least 2 (spike logit, soma) for the NeuronIO protocol",
                    std::to_string(m.config().num_output));
    return m;
}

template <class T>
void run_eval(const eval_options& o) {
    const auto m = load_neuronio_model<T>(o);
    const auto files = list_neuronio_files(o.data);
    // Everything is written into a staging folder first and moved into --out together at the end.
    staged_report report(o.out, "eval_results.json");
    std::vector<neuronio_predictions> predictions;
    progress bar("eval " + o.split, static_cast<std::int64_t>(files.size()), "sample-steps");
    double steps = 0;
    std::string example_written;
    for (std::size_t i = 0; i < files.size(); ++i) {
        const auto file = load_neuronio(files[i], o.cache);
        count_neuronio_scored(file, o.protocol);  // checks --ignore-start against the file before the work
        predictions.push_back(predict_neuronio(m, file, o.protocol));
        steps += static_cast<double>(file.simulations.size()) * file.duration_ms;
        bar.update(static_cast<std::int64_t>(i + 1), steps, fs::path(files[i]).filename().string());
        if (example_written.empty() && !file.simulations.empty()) {
            // First simulation of the first file with at least one output spike (else simulation 0).
            int sim = 0;
            for (int s = 0; s < static_cast<int>(file.simulations.size()); ++s) {
                const auto& sp = file.simulations[static_cast<std::size_t>(s)].spike;
                if (std::find(sp.begin(), sp.end(), 1) != sp.end()) {
                    sim = s;
                    break;
                }
            }
            example_written = report.path("example_traces.safetensors");
            write_example(example_written, file, predictions.back(), sim);
        }
    }
    bar.finish();
    const auto ev = evaluate_neuronio(predictions, o.protocol);
    nlohmann::json results = ev.metrics.to_map();
    nlohmann::json j;
    j[o.split + "_results"] = results;
    j["details"] = {{"model", o.model},
                    {"files", files},
                    {"simulations_total", ev.simulations_total},
                    {"simulations_kept", ev.simulations_kept},
                    {"scored_samples", ev.samples},
                    {"input_window_size", o.protocol.window},
                    {"burn_in_time", o.protocol.burn_in},
                    {"ignore_time_at_start_ms", o.protocol.ignore_time_at_start_ms},
                    {"num_spikes_per_sim", {o.protocol.min_spikes, o.protocol.max_spikes}},
                    {"precision", o.precision}};
    if (!ev.spike_metrics_undefined.empty())
        j["details"]["spike_metrics_undefined"] = ev.spike_metrics_undefined;
    write_json_atomic(report.path("eval_results.json"), j);
    std::string roc = "fpr,tpr,threshold\n";
    for (std::size_t i = 0; i < ev.roc.fpr.size(); ++i)
        roc += std::to_string(ev.roc.fpr[i]) + "," + std::to_string(ev.roc.tpr[i]) + "," +
               std::to_string(ev.roc.thresholds[i]) + "\n";
    const auto roc_path = report.path("roc.csv");
    write_text_atomic(roc_path, roc);

    std::printf("%s results (%d of %d simulations kept, %lld scored ms)\n", o.split.c_str(),
                ev.simulations_kept, ev.simulations_total, static_cast<long long>(ev.samples));
    for (const auto& [key, value] : ev.metrics.to_map()) std::printf("  %-34s %.6f\n", key.c_str(), value);
    // Plots of an earlier evaluation in this folder that this one does not redraw would no longer show these
    // results: commit removes them (without plots both, without a ROC (undefined) the ROC plot).
    const bool roc_plot = !o.no_plots && ev.spike_metrics_undefined.empty();
    if (!o.no_plots) {
        const std::string title = fs::path(o.model).filename().string() + " on " + o.split;
        if (roc_plot)
            make_plot({"roc", "--csv", roc_path, "--out", report.path("roc.png"), "--title", title});
        if (!example_written.empty())
            make_plot({"traces", "--data", example_written, "--out", report.path("example_traces.png")});
    }
    report.commit(
        {"eval_results.json", "roc.csv", "roc.png", "example_traces.safetensors", "example_traces.png"});
    const auto json_path = (fs::path(o.out) / "eval_results.json").string();
    std::printf("wrote %s\n", json_path.c_str());
    if (!ev.spike_metrics_undefined.empty())
        std::fprintf(stderr, "warning: %s (null in %s)\n", ev.spike_metrics_undefined.c_str(),
                     json_path.c_str());
}

template <class T>
void run_predict(const eval_options& o) {
    const auto m = load_neuronio_model<T>(o);
    // One output per input, named after it: two inputs of the same name (from two folders) would overwrite.
    const auto files = list_neuronio_files(o.data);
    const auto output_of = [&](const std::string& path) {
        return (fs::path(o.out) / (fs::path(path).stem().string() + ".predictions.safetensors")).string();
    };
    std::map<std::string, std::string> outputs;
    for (const auto& path : files)
        if (const auto [it, fresh] = outputs.emplace(output_of(path), path); !fresh)
            throw error(path, "--data",
                        "input files with distinct names (each writes NAME.predictions.safetensors)",
                        "the name of " + it->second, "predict the two folders into different --out folders");
    create_output_folder(o.out);
    for (const auto& path : files) {
        const auto file = load_neuronio(path, o.cache);
        const auto p = predict_neuronio(m, file, o.protocol);
        const std::vector<std::int64_t> shape{p.num_simulations, p.duration_ms};
        tensor_file f;
        f.metadata["source"] = path;
        f.metadata["model"] = o.model;
        f.metadata["description"] =
            "spike_prob = sigmoid(spike logit); soma_pred_mv = z-scored soma / 0.1 re-scaled to the file's "
            "GT (published protocol); soma_raw_mv = soma / 0.1 (mV above -67.7); *_true = targets";
        for (const auto& [name, values] : {std::pair{"spike_prob", &p.spike_prob},
                                           {"soma_pred_mv", &p.soma_pred_mv},
                                           {"soma_raw_mv", &p.soma_raw_mv},
                                           {"spike_true", &p.spike_true},
                                           {"soma_true_mv", &p.soma_true_mv}})
            f.tensors.push_back(make_tensor<double>(name, shape, *values));
        const auto out = output_of(path);
        write_safetensors(out, f);
        std::printf("wrote %s\n", out.c_str());
    }
}

void add_common(CLI::App* cmd, eval_options& o) {
    cmd->add_option("-m,--model", o.model, "Model: .safetensors, official zoo folder or .pt")->required();
    cmd->add_option("-d,--data", o.data, "NeuronIO simulation files (.p) or folders of them")->required();
    cmd->add_option("-o,--out", o.out, "Output folder")->capture_default_str();
    cmd->add_option("--cache", o.cache, "Folder for converted-data caches (faster reloading)");
    cmd->add_option("--window", o.protocol.window, "input_window_size (ms)")
        ->check(positive_number())
        ->capture_default_str();
    cmd->add_option("--burn-in", o.protocol.burn_in, "burn_in_time (ms), less than --window")
        ->check(non_negative_number())
        ->capture_default_str();
    cmd->add_option("--precision", o.precision, "Compute precision")->check(CLI::IsMember({"f32", "f64"}));
    cmd->add_option("--threads", o.threads, "Threads (default or 0: all cores)")
        ->check(non_negative_number());
}

}  // namespace

void register_eval(CLI::App& app) {
    static eval_options o;
    auto* cmd =
        app.add_subcommand("eval", "NeuronIO evaluation protocol (AUC, TP@FP, soma RMSE, ...) with plots");
    add_common(cmd, o);
    cmd->add_option("--split", o.split, "Name of the split, used as '<split>_results' in eval_results.json");
    cmd->add_option("--ignore-start", o.protocol.ignore_time_at_start_ms,
                    "ms dropped at the start of each simulation")
        ->check(non_negative_number())
        ->capture_default_str();
    cmd->add_option("--max-spikes", o.protocol.max_spikes,
                    "Keep simulations with at most this many output spikes")
        ->check(non_negative_number())
        ->capture_default_str();
    cmd->add_flag("--no-plots", o.no_plots,
                  "Do not make PNG plots (and remove those of an earlier run here)");
    cmd->callback([] {
        set_num_threads(o.threads);
        if (o.precision == "f32")
            run_eval<float>(o);
        else
            run_eval<double>(o);
    });
}

void register_predict(CLI::App& app) {
    static eval_options o;
    auto* cmd =
        app.add_subcommand("predict", "Stitched full-length predictions of NeuronIO files (safetensors)");
    o.out = "predictions";  // before add_common, which shows the defaults in --help
    add_common(cmd, o);
    cmd->callback([] {
        set_num_threads(o.threads);
        if (o.precision == "f32")
            run_predict<float>(o);
        else
            run_predict<double>(o);
    });
}

}  // namespace elm::cli
