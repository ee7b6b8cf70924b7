// NeuronIO training loop (reference/paper.md §3.1, reference/datasets.md §1.7): the published sample
// generator (a random file per block of batches, distinct simulations per batch, window starts uniform in
// [500, duration - window)), 0.5·BCE + 0.5·MSE, Adam + cosine decay per batch, per-epoch validation with the
// published protocol, atomic checkpoints and exact resume.
//
// Determinism: every random draw of batch s comes from a generator seeded with (seed, s) (and the file of
// its block from (seed, block)), so a batch depends only on its step: resuming from a checkpoint replays
// exactly the batches an uninterrupted run would see, and the background loader cannot change results.

#include <elmneuron/error.hpp>
#include <elmneuron/loss.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/neuronio_task.hpp>
#include <elmneuron/optim.hpp>
#include <elmneuron/tensor_file.hpp>
#include <elmneuron/trainer.hpp>

#include "util/rng.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace elm {
namespace {

namespace fs = std::filesystem;

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {  // splitmix64 of a combined key
    std::uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E5Full;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

template <class T>
struct batch {
    std::int64_t step = 0;
    sparse_input<T> x;
    std::vector<T> spike, soma;
};

// Produces batches step by step on a background thread, loading each block's file once.
template <class T>
class batch_loader {
public:
    batch_loader(const run_config& c, std::vector<std::string> files, int sims, int duration,
                 std::int64_t first, std::int64_t last)
        : c_(c), files_(std::move(files)), sims_(sims), duration_(duration), next_(first), last_(last) {
        const double per_file = c.train.file_load_fraction * sims * duration /
                                (static_cast<double>(c.train.batch_size) * c.train.input_window_size);
        batches_per_file_ = std::max<std::int64_t>(1, static_cast<std::int64_t>(per_file));
        worker_ = std::thread([this] { run(); });
    }
    ~batch_loader() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        worker_.join();
    }
    batch<T> pop() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return !queue_.empty() || failure_; });
        if (failure_ && queue_.empty()) std::rethrow_exception(failure_);
        batch<T> b = std::move(queue_.front());
        queue_.pop_front();
        cv_.notify_all();
        return b;
    }
    std::int64_t batches_per_file() const { return batches_per_file_; }

private:
    void run() {
        try {
            std::int64_t loaded_block = -1;
            neuronio_file file;
            const int B = c_.train.batch_size, W = c_.train.input_window_size,
                      lo = c_.train.ignore_time_from_start;
            for (std::int64_t s = next_; s < last_; ++s) {
                const std::int64_t block = s / batches_per_file_;
                if (block != loaded_block) {
                    detail::rng pick(mix(c_.train.seed, 0x100000000ull + static_cast<std::uint64_t>(block)));
                    const auto f = pick.below(files_.size());
                    file = load_neuronio(files_[f], c_.data.cache_dir);
                    if (static_cast<int>(file.simulations.size()) < B || file.duration_ms < lo + W + 1)
                        throw error(file.source, "simulations",
                                    ">= batch_size (" + std::to_string(B) +
                                        ") simulations of >= " + std::to_string(lo + W + 1) + " ms",
                                    std::to_string(file.simulations.size()) + " of " +
                                        std::to_string(file.duration_ms) + " ms");
                    loaded_block = block;
                }
                // Distinct simulations (partial Fisher-Yates), starts uniform in [lo, duration - W).
                detail::rng gen(mix(c_.train.seed, static_cast<std::uint64_t>(s)));
                std::vector<int> order(file.simulations.size());
                for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
                std::vector<int> sims(static_cast<std::size_t>(B)), starts(static_cast<std::size_t>(B));
                for (int i = 0; i < B; ++i) {
                    const auto j =
                        i + static_cast<std::size_t>(gen.below(order.size() - static_cast<std::size_t>(i)));
                    std::swap(order[static_cast<std::size_t>(i)], order[j]);
                    sims[static_cast<std::size_t>(i)] = order[static_cast<std::size_t>(i)];
                    starts[static_cast<std::size_t>(i)] =
                        lo +
                        static_cast<int>(gen.below(static_cast<std::uint64_t>(file.duration_ms - W - lo)));
                }
                batch<T> b;
                b.step = s;
                b.x = neuronio_window_input<T>(file, sims, starts, W);
                neuronio_window_targets<T>(file, sims, starts, W, b.spike, b.soma);
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [this] {
                    return stop_ || static_cast<int>(queue_.size()) < c_.train.num_prefetch_batch;
                });
                if (stop_) return;
                queue_.push_back(std::move(b));
                cv_.notify_all();
            }
        } catch (...) {
            std::lock_guard lock(mutex_);
            failure_ = std::current_exception();
            cv_.notify_all();
        }
    }

    const run_config& c_;
    std::vector<std::string> files_;
    int sims_, duration_;
    std::int64_t next_, last_, batches_per_file_ = 1;
    std::thread worker_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<batch<T>> queue_;
    bool stop_ = false;
    std::exception_ptr failure_;
};

struct run_state {
    std::int64_t step = 0;
    int best_epoch = -1;
    double best_value = 0;
    std::string train_files;  // file_identity of the training files
    std::string valid_files;  // and of the validation files (they select the best model)
};

template <class T>
void save_checkpoint(const std::string& path, const run_config& c, const model<T>& m, const optimizer<T>& opt,
                     const run_state& st) {
    tensor_file f = state_dict(m);
    opt.save_state(f);
    f.metadata["format"] = "elmneuron.checkpoint.v1";
    f.metadata["run_config"] = to_json(c);
    f.metadata["train_files"] = st.train_files;
    f.metadata["valid_files"] = st.valid_files;
    f.metadata["step"] = std::to_string(st.step);
    f.metadata["best_epoch"] = std::to_string(st.best_epoch);
    std::ostringstream best;
    best.precision(17);
    best << st.best_value;
    f.metadata["best_value"] = best.str();
    write_safetensors(path, f);
}

std::string meta(const tensor_file& f, const char* key) {
    const auto it = f.metadata.find(key);
    if (it == f.metadata.end())
        throw error(f.source, std::string("__metadata__.") + key, "present", "missing");
    return it->second;
}

// What the training files are (name and size, in order): a resumed run must draw its batches from the
// same ones, or it is no longer the run it continues.
std::string file_identity(const std::vector<std::string>& files) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& f : files) {
        std::error_code ec;
        const auto bytes = fs::file_size(f, ec);
        j.push_back(
            {{"file", fs::path(f).filename().string()}, {"bytes", ec ? -1 : static_cast<long long>(bytes)}});
    }
    return j.dump();
}

// The run's identity for --resume: the whole config but data.test, which only the final evaluation reads
// (a broken or moved test file can be fixed and the run resumed).
std::string resume_identity(const std::string& config_json, const std::string& source) {
    auto j = nlohmann::json::parse(config_json, nullptr, false);
    if (!j.is_object() || !j.contains("data") || !j["data"].is_object())
        throw error(source, "__metadata__.run_config", "a run config JSON with a data section",
                    config_json.substr(0, 80));
    j["data"].erase("test");
    return j.dump();
}

// The first key path (e.g. "train.learning_rate") whose value differs between two configs, with both values.
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& at = "") {
    if (a.is_object() && b.is_object()) {
        for (const auto& [key, value] : a.items()) {
            const std::string path = at.empty() ? key : at + "." + key;
            if (!b.contains(key)) return path + " (only in the checkpoint's)";
            if (auto d = first_difference(value, b[key], path); !d.empty()) return d;
        }
        for (const auto& [key, value] : b.items())
            if (!a.contains(key)) return (at.empty() ? key : at + "." + key) + " (only in this run's)";
        return "";
    }
    return a == b ? "" : at + ": " + a.dump() + " in the checkpoint, " + b.dump() + " here";
}

// The evaluation protocol with the run's window and burn-in; the first ms dropped capped for files shorter
// than the published 6 s.
neuronio_eval_options validation_options(const run_config& c) {
    neuronio_eval_options o;
    o.window = c.train.input_window_size;
    o.burn_in = c.train.burn_in_time;
    return o;
}
void fit_to(neuronio_eval_options& o, const neuronio_file& file) {
    o.ignore_time_at_start_ms = std::min(o.ignore_time_at_start_ms, file.duration_ms - 1);
}

template <class T>
neuronio_evaluation validate(const model<T>& m, const std::vector<std::string>& files, const run_config& c) {
    auto o = validation_options(c);
    std::vector<neuronio_predictions> preds;
    for (const auto& f : files) {
        const auto file = load_neuronio(f, c.data.cache_dir);
        fit_to(o, file);
        preds.push_back(predict_neuronio(m, file, o));
    }
    return evaluate_neuronio(preds, o);
}

bool better(const std::string& metric, double value, double best, bool first) {
    if (first) return true;
    return metric == "AUC" ? value > best : value < best;
}

// Keeps the first `keep_rows` data rows of a CSV (resume: rows after the checkpoint are recomputed).
void truncate_csv(const std::string& path, std::int64_t keep_rows) {
    if (!fs::exists(path)) return;
    std::ifstream in(path);
    std::string line, out;
    std::int64_t row = -1;
    while (std::getline(in, line) && row < keep_rows) {
        out += line + "\n";
        ++row;
    }
    write_text_atomic(path, out);
}

template <class T>
void train_impl(const run_config& c, bool resume, const train_callbacks& cb, std::int64_t stop_after) {
    const auto& t = c.train;
    auto say = [&](const std::string& msg) {
        if (cb.on_message) cb.on_message(msg);
    };
    create_output_folder(c.out_dir, "out_dir");
    const folder_lock lock(c.out_dir, "out_dir");  // one run per folder
    remove_stale_temporaries(c.out_dir);           // of runs killed mid-write
    const fs::path out(c.out_dir);
    const std::string ckpt = (out / "checkpoint.safetensors").string();
    if (!resume)
        for (const char* name : {"checkpoint.safetensors", "final_model.safetensors"})
            if (fs::exists(out / name))
                throw error(c.out_dir, "out_dir",
                            "a folder without a run in it, or --resume to continue its run",
                            std::string("a run (") + name + ")",
                            "continue it with --resume, or start over in another out_dir (or after deleting "
                            "this one)");
    // The data paths, with the config key that names them.
    const auto list_data = [](const std::vector<std::string>& paths, const char* key) {
        try {
            return list_neuronio_files(paths);
        } catch (const file_not_found_error& e) {
            throw error(e.file(), key, "an existing NeuronIO file or folder", "no such file or folder");
        } catch (const error& e) {
            if (!e.hint().empty()) throw;
            throw error(e.file(), e.field(), e.expected(), e.got(), std::string("listed in ") + key);
        }
    };
    const auto train_files = list_data(c.data.train, "data.train");
    // Without data.valid the published loader validates on the training files; said, not silent.
    if (c.data.valid.empty())
        say("no data.valid: validating on training files (the validation metrics are not held-out)");
    auto valid_files = c.data.valid.empty() ? train_files : list_data(c.data.valid, "data.valid");
    if (t.valid_files > 0 && static_cast<int>(valid_files.size()) > t.valid_files)
        valid_files.resize(static_cast<std::size_t>(t.valid_files));
    else if (t.valid_files > static_cast<int>(valid_files.size()))
        say("warning: train.valid_files is " + std::to_string(t.valid_files) + " but there are only " +
            std::to_string(valid_files.size()) + " validation file(s): validating on all of them");
    // Read once now, so that a broken validation file stops the run before its first epoch rather than
    // after it (each validation reads them again, from data.cache_dir when set), as does validation data
    // that gives nothing to score, or no AUC to select by. The test files are read only by the final
    // evaluation, which a run completed before it repeats on --resume.
    {
        auto o = validation_options(c);
        std::vector<neuronio_file> files;  // their output spikes only: the inputs can be ~100 MB a file
        for (const auto& f : valid_files) {
            files.push_back(load_neuronio(f, c.data.cache_dir));
            fit_to(o, files.back());
            for (auto& sim : files.back().simulations) {
                std::vector<std::int32_t>().swap(sim.event_time);
                std::vector<std::int32_t>().swap(sim.event_channel);
                std::vector<float>().swap(sim.soma_mv);
            }
        }
        neuronio_scored_counts scored;
        for (const auto& f : files) scored += count_neuronio_scored(f, o);
        if (const auto why = neuronio_spike_metrics_undefined(scored, valid_files.front(), o); !why.empty()) {
            if (t.select_metric == "AUC")
                throw error(valid_files.front(), "train.select_metric",
                            "validation data on which the AUC is defined", why,
                            "select by soma_RMSE, or validate on data with output spikes");
            say("warning: validation data: " + why + " (logged as nan)");
        }
    }
    const auto test_files =
        c.data.test.empty() ? std::vector<std::string>{} : list_data(c.data.test, "data.test");

    // The first training file fixes simulations per file and duration (batches per file, sampling range).
    const auto first = load_neuronio(train_files.front(), c.data.cache_dir);
    if (first.num_channels() != c.model.num_input)
        throw error(first.source, "num_segments",
                    std::to_string(c.model.num_input) + " input channels (model.num_input)",
                    std::to_string(first.num_channels()));

    model<T> m(c.model, t.seed);
    optimizer_config oc;
    oc.kind = parse_optimizer_kind(t.optimizer, "train.optimizer");
    oc.lr = t.learning_rate;
    oc.weight_decay = t.weight_decay;
    optimizer<T> opt(oc, m.parameters().size());
    run_state st;
    st.train_files = file_identity(train_files);
    st.valid_files = file_identity(valid_files);
    const std::int64_t total = static_cast<std::int64_t>(t.num_epochs) * t.batches_per_epoch;
    if (resume && fs::exists(ckpt)) {
        const auto f = read_safetensors(ckpt);
        const auto theirs = resume_identity(meta(f, "run_config"), ckpt),
                   ours = resume_identity(to_json(c), "this run's config");
        if (theirs != ours)
            throw error(ckpt, "run_config", "the same run config as this run (data.test may differ)",
                        "a different one: " +
                            first_difference(nlohmann::json::parse(theirs), nlohmann::json::parse(ours)),
                        "resume with the config the run was started with, or use a new out_dir");
        if (const auto files = f.metadata.find("train_files");
            files != f.metadata.end() && files->second != st.train_files)
            throw error(ckpt, "train_files", "the training files the run started with: " + files->second,
                        st.train_files, "a resumed run draws its batches from the same files");
        if (const auto files = f.metadata.find("valid_files");
            files != f.metadata.end() && files->second != st.valid_files)
            throw error(ckpt, "valid_files", "the validation files the run started with: " + files->second,
                        st.valid_files,
                        "the best model is chosen on the same validation data in every epoch");
        tensor_file model_part;  // the checkpoint holds the model's tensors and the optimiser's ("optim.*")
        model_part.source = f.source;
        for (const auto& tensor : f.tensors)
            if (tensor.name.rfind("optim.", 0) != 0) model_part.tensors.push_back(tensor);
        m = model_from_state_dict<T>(c.model, model_part);
        opt.load_state(f);
        st.step = std::stoll(meta(f, "step"));
        st.best_epoch = std::stoi(meta(f, "best_epoch"));
        st.best_value = std::stod(meta(f, "best_value"));
        say("resuming from step " + std::to_string(st.step) + " of " + std::to_string(total));
    } else {
        write_text_atomic((out / "train_log.csv").string(),
                          "step,epoch,loss,lr,grad_norm,sample_steps_per_s\n");
        write_text_atomic((out / "valid_log.csv").string(), "");
    }
    write_text_atomic((out / "config.json").string(), to_json(c) + "\n");
    truncate_csv((out / "train_log.csv").string(), st.step);
    truncate_csv((out / "valid_log.csv").string(), st.step / t.batches_per_epoch);

    lr_schedule schedule;
    schedule.kind = t.schedule == "cosine" ? schedule_kind::cosine : schedule_kind::constant;
    schedule.base_lr = t.learning_rate;
    schedule.total_steps = total;
    const std::int64_t end = stop_after > 0 ? std::min(total, stop_after) : total;
    batch_loader<T> loader(c, train_files, static_cast<int>(first.simulations.size()), first.duration_ms,
                           st.step, end);
    if (st.step == 0)
        say(std::to_string(train_files.size()) + " training files, " +
            std::to_string(loader.batches_per_file()) + " batches per loaded file, " + std::to_string(total) +
            " steps");

    std::ofstream log((out / "train_log.csv").string(), std::ios::app);
    const int B = t.batch_size, W = t.input_window_size, d_o = c.model.num_output;
    std::vector<T> y(static_cast<std::size_t>(B) * W * d_o), dy(y.size()), grads(m.parameters().size());
    workspace<T> ws;
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t start_step = st.step;
    while (st.step < end) {
        auto b = loader.pop();
        if (b.step != st.step)
            throw error("trainer", "step", std::to_string(st.step), std::to_string(b.step));
        m.forward(b.x, y, ws);
        const double loss = neuronio_loss<T>(y, B, W, d_o, b.spike, b.soma, t.loss_burn_in, dy);
        if (!std::isfinite(loss))
            throw error(c.out_dir, "loss", "a finite training loss",
                        "NaN or inf at step " + std::to_string(st.step),
                        "lower the learning rate or enable clip_grad_norm; the last checkpoint is intact");
        std::fill(grads.begin(), grads.end(), T(0));
        m.backward(b.x, dy, ws, grads);
        const double norm = t.clip_grad_norm > 0
                                ? clip_grad_norm<T>(grads, m.trainable_mask(), t.clip_grad_norm)
                                : grad_norm<T>(grads, m.trainable_mask());
        const double lr = schedule.at(st.step);
        opt.step(m.parameters(), grads, m.trainable_mask(), lr);
        ++st.step;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        step_report r{st.step,
                      total,
                      static_cast<int>((st.step - 1) / t.batches_per_epoch) + 1,
                      loss,
                      lr,
                      norm,
                      static_cast<double>(st.step - start_step) * B * W / std::max(seconds, 1e-9)};
        log << r.step << "," << r.epoch << "," << loss << "," << lr << "," << norm << ","
            << r.sample_steps_per_s << "\n";
        log.flush();
        if (cb.on_step) cb.on_step(r);

        const bool epoch_end = st.step % t.batches_per_epoch == 0;
        if (epoch_end) {
            epoch_report e;
            e.epoch = static_cast<int>(st.step / t.batches_per_epoch);
            e.step = st.step;
            e.valid = validate(m, valid_files, c).metrics.to_map();
            const double value = e.valid.at(t.select_metric);  // defined: checked before training
            e.best = better(t.select_metric, value, st.best_value, st.best_epoch < 0);
            if (e.best) {
                st.best_epoch = e.epoch;
                st.best_value = value;
                save_model((out / "best_model.safetensors").string(), m);  // a real copy, written atomically
            }
            std::ostringstream row;
            row.precision(10);
            if (e.epoch == 1) {
                row << "epoch,step";
                for (const auto& [k, v] : e.valid) row << "," << k;
                row << "\n";
            }
            row << e.epoch << "," << e.step;
            for (const auto& [k, v] : e.valid) row << "," << v;
            row << "\n";
            std::ofstream(out / "valid_log.csv", std::ios::app) << row.str();
            if (cb.on_epoch) cb.on_epoch(e);
        }
        const bool stop = cb.should_stop && cb.should_stop();
        if (epoch_end || st.step % t.checkpoint_every == 0 || st.step == end || stop)
            save_checkpoint(ckpt, c, m, opt, st);
        if (stop && st.step < end) {
            say("stopped at step " + std::to_string(st.step) + " of " + std::to_string(total) +
                " on request; checkpoint saved: --resume continues from here");
            return;
        }
    }
    if (st.step < total) {  // stopped early on request (stop_after_steps)
        say("stopped after step " + std::to_string(st.step) + " of " + std::to_string(total) +
            " as asked; checkpoint saved: --resume continues from here");
        return;
    }

    save_model((out / "final_model.safetensors").string(), m);
    // Final evaluation of the selected model (published: by validation metric) on validation and test data.
    const auto best = st.best_epoch >= 0 ? load_model<T>((out / "best_model.safetensors").string()) : m;
    nlohmann::json results;
    using split_files = std::pair<const char*, const std::vector<std::string>*>;
    for (const auto& [split, files] :
         {split_files{"valid", &valid_files}, split_files{"test", &test_files}}) {
        if (files->empty()) continue;
        const auto ev = validate(best, *files, c);
        results[std::string(split) + "_results"] = ev.metrics.to_map();
        if (!ev.spike_metrics_undefined.empty()) {  // null in the JSON; as `elmneuron eval` writes it
            results[std::string(split) + "_spike_metrics_undefined"] = ev.spike_metrics_undefined;
            say(std::string("warning: ") + split + " data: " + ev.spike_metrics_undefined);
        }
    }
    results["best_epoch"] = st.best_epoch;
    results["select_metric"] = t.select_metric;
    write_text_atomic((out / "eval_results.json").string(), results.dump(2) + "\n");
    say("best epoch " + std::to_string(st.best_epoch) + " (" + t.select_metric + " " +
        std::to_string(st.best_value) + ")");
}

}  // namespace

void train_neuronio(const run_config& config, bool resume, const train_callbacks& callbacks,
                    std::int64_t stop_after) {
    set_num_threads(config.train.threads);
    if (config.train.precision == "f64")
        train_impl<double>(config, resume, callbacks, stop_after);
    else
        train_impl<float>(config, resume, callbacks, stop_after);
}

}  // namespace elm
