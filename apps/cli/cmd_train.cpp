// elmneuron train --config FILE [--resume]: NeuronIO training with progress, CSV/JSON logs, checkpoints,
// exact resume and a learning-curve plot (docs/training.md).

#include <elmneuron/error.hpp>
#include <elmneuron/trainer.hpp>

#include <signal.h>

#include "commands.hpp"
#include "common.hpp"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

namespace elm::cli {

namespace {
volatile std::sig_atomic_t stop_signal = 0;  // the first SIGINT/SIGTERM received during `train`
}  // namespace

void register_train(CLI::App& app) {
    auto* cmd =
        app.add_subcommand("train", "Train an ELM on NeuronIO data (config: model, train, data sections)");
    static std::string config_path, out_dir;
    static bool resume = false, no_plots = false;
    static long long stop_after = 0;
    cmd->add_option("-c,--config", config_path, "Run config JSON (see configs/)")->required();
    cmd->add_option("-o,--out", out_dir, "Output folder (overrides the config's out_dir)");
    cmd->add_flag("--resume", resume,
                  "Continue from <out>/checkpoint.safetensors (exactly, as if never stopped)");
    cmd->add_option("--stop-after-steps", stop_after,
                    "Stop after this many steps in total (checkpoint written)")
        ->check(positive_number());
    cmd->add_flag("--no-plots", no_plots, "Do not make the learning-curve PNG");
    cmd->callback([] {
        if (std::filesystem::is_directory(config_path))
            throw error(config_path, "--config", "a run config JSON file", "a folder");
        std::ifstream in(config_path);
        if (!in) throw file_not_found_error(config_path);
        std::stringstream text;
        text << in.rdbuf();
        auto config = parse_run_config(text.str(), config_path);
        if (!out_dir.empty()) config.out_dir = out_dir;
        std::unique_ptr<progress> bar;
        train_callbacks cb;
        cb.on_message = [](const std::string& m) { std::fprintf(stderr, "train: %s\n", m.c_str()); };
        cb.on_step = [&bar](const step_report& r) {
            if (!bar) bar = std::make_unique<progress>("train", r.total_steps, "steps");
            char status[160];
            std::snprintf(status, sizeof status, "epoch %d  loss %.5f  lr %.3g  %.3g sample-steps/s", r.epoch,
                          r.loss, r.lr, r.sample_steps_per_s);
            bar->update(r.step, static_cast<double>(r.step), status);
        };
        cb.on_epoch = [](const epoch_report& e) {
            std::fprintf(stderr, "\nepoch %d (step %lld): valid AUC %.5f  soma RMSE %.4f mV%s\n", e.epoch,
                         static_cast<long long>(e.step), e.valid.at("AUC"), e.valid.at("soma_RMSE"),
                         e.best ? "  (best so far: saved)" : "");
        };
        // Ctrl-C or SIGTERM: finish the step, checkpoint, stop (resumable, nothing lost); a second one stops
        // at once (e.g. during a long validation pass), as does SIGKILL (then --resume repeats at most
        // checkpoint_every steps).
        struct sigaction on_stop {};
        on_stop.sa_handler = [](int sig) {
            if (stop_signal != 0) {
                ::signal(sig, SIG_DFL);
                ::raise(sig);
            }
            stop_signal = sig;
        };
        ::sigemptyset(&on_stop.sa_mask);
        ::sigaction(SIGINT, &on_stop, nullptr);
        ::sigaction(SIGTERM, &on_stop, nullptr);
        cb.should_stop = [] { return stop_signal != 0; };
        train_neuronio(config, resume, cb, stop_after);
        if (stop_signal != 0) {  // end as the signal would have ended us (status 128 + signal)
            if (bar) bar->finish();
            std::fflush(nullptr);
            const int sig = stop_signal;
            ::signal(sig, SIG_DFL);
            ::raise(sig);
        }
        if (bar) bar->finish();
        const std::filesystem::path out(config.out_dir);
        if (!no_plots)
            make_plot({"curves", "--train-csv", (out / "train_log.csv").string(), "--valid-csv",
                       (out / "valid_log.csv").string(), "--out", (out / "learning_curves.png").string()});
        std::printf("run folder: %s\n", config.out_dir.c_str());
    });
}

}  // namespace elm::cli
