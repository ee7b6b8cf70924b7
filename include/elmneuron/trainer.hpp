#pragma once
// Training runs: one JSON config (model, data, training settings; every key validated), a loop with the
// published NeuronIO sample generator, loss, optimiser and schedule, per-epoch validation with the published
// evaluation protocol, atomic checkpoints, exact resume, CSV/JSON logs. docs/training.md describes the files.

#include <elmneuron/config.hpp>
#include <elmneuron/metrics.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace elm {

struct train_settings {
    // Keys of the published train_config.json (same names and meaning).
    int batch_size = 8;
    int batches_per_epoch = 10000;
    int num_epochs = 35;
    double learning_rate = 5e-4;
    int input_window_size = 500;
    int burn_in_time = 150;           // evaluation windows' burn-in (published: evaluation only)
    double file_load_fraction = 0.3;  // batches per loaded file = int(f·sims·duration/(batch·window))
    int num_prefetch_batch = 100;     // batches prepared ahead by the background loader
    // Ours.
    std::string optimizer = "adam";   // adam | adamw | adamax | sgd
    std::string schedule = "cosine";  // cosine (over the whole run, stepped per batch) | constant
    double weight_decay = 0.0;
    double clip_grad_norm = 0.0;       // 0: no clipping
    int loss_burn_in = 0;              // paper: loss after 150 ms; published code: 0
    int ignore_time_from_start = 500;  // window starts uniform in [this, duration - window)
    std::uint64_t seed = 0;
    int checkpoint_every = 500;               // steps; also at every epoch end
    std::string precision = "f32";            // f32 | f64
    int threads = 0;                          // 0: all cores
    std::string select_metric = "soma_RMSE";  // best model: lowest soma_RMSE, or highest AUC
    int valid_files = 1;  // validation files used per epoch (published: valid_files[0]); 0 = all
};

struct data_settings {
    std::vector<std::string> train, valid, test;  // files or folders of NeuronIO pickles
    std::string cache_dir;                        // converted-data cache ("" = none)
};

struct run_config {
    model_config model;
    train_settings train;
    data_settings data;
    std::string out_dir = "runs/neuronio";
};

// {"model": {...published model keys...}, "train": {...}, "data": {...}, "out_dir": "..."}; every unknown
// key or bad value is an elm::error naming `source` and the key path (e.g. "train.batch_size").
run_config parse_run_config(std::string_view json_text, std::string_view source);
std::string to_json(const run_config& c);

struct step_report {
    std::int64_t step = 0, total_steps = 0;
    int epoch = 0;
    double loss = 0, lr = 0, grad_norm = 0;
    double sample_steps_per_s = 0;  // this run segment's average
};
struct epoch_report {
    int epoch = 0;
    std::int64_t step = 0;
    std::map<std::string, double> valid;  // published metric keys
    bool best = false;
};
struct train_callbacks {
    std::function<void(const step_report&)> on_step;
    std::function<void(const epoch_report&)> on_epoch;
    std::function<void(const std::string&)> on_message;
    // Asked after every step: true stops the run there with a checkpoint (e.g. on Ctrl-C), to be resumed.
    std::function<bool()> should_stop;
};

// Runs (or with resume = true continues from out_dir/checkpoint.safetensors) the NeuronIO training described
// by `config`. Writes into out_dir: config.json, train_log.csv, valid_log.csv, checkpoint.safetensors,
// best_model.safetensors, final_model.safetensors, eval_results.json (valid/test of the best model).
// With stop_after_steps > 0 the run stops after that many steps (counted from 0, after checkpointing).
void train_neuronio(const run_config& config, bool resume, const train_callbacks& callbacks = {},
                    std::int64_t stop_after_steps = 0);

}  // namespace elm
