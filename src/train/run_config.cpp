// The training-run config file: {"model": ..., "train": ..., "data": ..., "out_dir": ...}. Model keys are the
// published constructor arguments (config.cpp), train keys extend the published train_config.json.

#include <elmneuron/error.hpp>
#include <elmneuron/trainer.hpp>

#include <nlohmann/json.hpp>

#include "io/io_detail.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace elm {
namespace {

using json = nlohmann::json;

struct reader {
    const json& j;
    std::string source, section;

    std::string path(const std::string& key) const { return section.empty() ? key : section + "." + key; }
    bool has(const char* key) const { return j.contains(key); }
    void ints(const char* key, int& v, int min_value) const {
        if (!has(key)) return;
        const json& x = j[key];
        if (!x.is_number_integer()) throw error(source, path(key), "an integer", x.dump());
        const auto n = x.get<std::int64_t>();
        if (n < min_value || n > 2000000000)
            throw error(source, path(key), "an integer >= " + std::to_string(min_value), x.dump());
        v = static_cast<int>(n);
    }
    void number(const char* key, double& v, double min_value, double max_value) const {
        if (!has(key)) return;
        const json& x = j[key];
        if (!x.is_number() || !std::isfinite(x.get<double>()) || x.get<double>() < min_value ||
            x.get<double>() > max_value)
            throw error(source, path(key),
                        "a number in [" + std::to_string(min_value) + ", " + std::to_string(max_value) + "]",
                        x.dump());
        v = x.get<double>();
    }
    void text(const char* key, std::string& v, const std::set<std::string>& allowed = {}) const {
        if (!has(key)) return;
        const json& x = j[key];
        if (!x.is_string()) throw error(source, path(key), "a string", x.dump());
        if (!allowed.empty() && !allowed.count(x.get<std::string>())) {
            std::string list;
            for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
            throw error(source, path(key), "one of " + list, x.dump());
        }
        v = x.get<std::string>();
    }
    void paths(const char* key, std::vector<std::string>& v) const {
        if (!has(key)) return;
        const json& x = j[key];
        if (x.is_string())
            v = {x.get<std::string>()};
        else if (x.is_array() && std::all_of(x.begin(), x.end(), [](const json& e) { return e.is_string(); }))
            v = x.get<std::vector<std::string>>();
        else
            throw error(source, path(key), "a path or a list of paths", x.dump());
    }
    void only(const std::set<std::string>& known) const {
        if (!j.is_object())
            throw error(source, section.empty() ? "(top level)" : section, "a JSON object", j.dump());
        for (const auto& [key, value] : j.items())
            if (!known.count(key) && !is_note_key(key))
                throw error(source, path(key), "a known setting", "unknown key");
    }
};

}  // namespace

run_config parse_run_config(std::string_view json_text, std::string_view source_view) {
    const std::string source(source_view);
    const json j = detail::parse_json_strict(json_text, source, "(JSON)", detail::max_config_depth);
    reader top{j, source, ""};
    top.only({"model", "train", "data", "out_dir"});
    if (!j.contains("model"))
        throw error(source, "model", "a model section (published model_config keys)", "missing");
    run_config c;
    c.model = parse_model_config(j["model"].dump(), source + ":model");
    top.text("out_dir", c.out_dir);
    if (c.out_dir.empty()) throw error(source, "out_dir", "a folder path", "an empty string");
    if (j.contains("train")) {
        reader r{j["train"], source, "train"};
        r.only({"batch_size",
                "batches_per_epoch",
                "num_epochs",
                "learning_rate",
                "input_window_size",
                "burn_in_time",
                "file_load_fraction",
                "num_prefetch_batch",
                "num_workers",
                "optimizer",
                "schedule",
                "weight_decay",
                "clip_grad_norm",
                "loss_burn_in",
                "ignore_time_from_start",
                "seed",
                "checkpoint_every",
                "precision",
                "threads",
                "select_metric",
                "valid_files"});
        auto& t = c.train;
        r.ints("batch_size", t.batch_size, 1);
        r.ints("batches_per_epoch", t.batches_per_epoch, 1);
        r.ints("num_epochs", t.num_epochs, 1);
        r.number("learning_rate", t.learning_rate, 0, 10);
        r.ints("input_window_size", t.input_window_size, 1);
        r.ints("burn_in_time", t.burn_in_time, 0);
        r.number("file_load_fraction", t.file_load_fraction, 1e-9, 1e6);
        r.ints("num_prefetch_batch", t.num_prefetch_batch, 1);
        int workers = 0;
        r.ints("num_workers", workers, 0);  // published key; loading here is one background thread
        r.text("optimizer", t.optimizer, {"adam", "adamw", "adamax", "sgd"});
        r.text("schedule", t.schedule, {"cosine", "constant"});
        r.number("weight_decay", t.weight_decay, 0, 1e6);
        r.number("clip_grad_norm", t.clip_grad_norm, 0, 1e12);
        r.ints("loss_burn_in", t.loss_burn_in, 0);
        r.ints("ignore_time_from_start", t.ignore_time_from_start, 0);
        int seed = 0;
        r.ints("seed", seed, 0);
        t.seed = static_cast<std::uint64_t>(seed);
        r.ints("checkpoint_every", t.checkpoint_every, 1);
        r.text("precision", t.precision, {"f32", "f64"});
        r.ints("threads", t.threads, 0);
        r.text("select_metric", t.select_metric, {"soma_RMSE", "AUC"});
        r.ints("valid_files", t.valid_files, 0);
        if (t.burn_in_time >= t.input_window_size)
            throw error(source, "train.burn_in_time", "< input_window_size", std::to_string(t.burn_in_time));
        if (t.loss_burn_in >= t.input_window_size)
            throw error(source, "train.loss_burn_in", "< input_window_size", std::to_string(t.loss_burn_in));
    }
    if (j.contains("data")) {
        reader r{j["data"], source, "data"};
        r.only({"train", "valid", "test", "cache_dir"});
        r.paths("train", c.data.train);
        r.paths("valid", c.data.valid);
        r.paths("test", c.data.test);
        r.text("cache_dir", c.data.cache_dir);
    }
    if (c.data.train.empty())
        throw error(source, "data.train", "one or more NeuronIO files or folders", "missing");
    if (c.model.num_output < 2)
        throw error(source, "model.num_output", ">= 2 for NeuronIO (spike logit, soma)",
                    std::to_string(c.model.num_output));
    return c;
}

std::string to_json(const run_config& c) {
    const auto& t = c.train;
    json j;
    j["model"] = json::parse(to_json(c.model));
    j["train"] = {{"batch_size", t.batch_size},
                  {"batches_per_epoch", t.batches_per_epoch},
                  {"num_epochs", t.num_epochs},
                  {"learning_rate", t.learning_rate},
                  {"input_window_size", t.input_window_size},
                  {"burn_in_time", t.burn_in_time},
                  {"file_load_fraction", t.file_load_fraction},
                  {"num_prefetch_batch", t.num_prefetch_batch},
                  {"optimizer", t.optimizer},
                  {"schedule", t.schedule},
                  {"weight_decay", t.weight_decay},
                  {"clip_grad_norm", t.clip_grad_norm},
                  {"loss_burn_in", t.loss_burn_in},
                  {"ignore_time_from_start", t.ignore_time_from_start},
                  {"seed", t.seed},
                  {"checkpoint_every", t.checkpoint_every},
                  {"precision", t.precision},
                  {"threads", t.threads},
                  {"select_metric", t.select_metric},
                  {"valid_files", t.valid_files}};
    j["data"] = {{"train", c.data.train},
                 {"valid", c.data.valid},
                 {"test", c.data.test},
                 {"cache_dir", c.data.cache_dir}};
    j["out_dir"] = c.out_dir;
    return j.dump(2);
}

}  // namespace elm
