// NeuronIO windows, targets and the published evaluation protocol (reference/paper.md §5;
// reference/datasets.md §1.7-1.8; ELM neuronio_eval_utils.py).

#include <elmneuron/error.hpp>
#include <elmneuron/neuronio_task.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace elm {
namespace {

// The protocol's filter: a simulation is kept when its output-spike count (whole duration) is in range.
bool kept_simulation(double spikes, const neuronio_eval_options& o) {
    return spikes >= o.min_spikes && spikes <= o.max_spikes;
}

void check_ignore_time(const std::string& source, int duration_ms, const neuronio_eval_options& o) {
    if (o.ignore_time_at_start_ms < 0 || o.ignore_time_at_start_ms >= duration_ms)
        throw error(source, "ignore_time_at_start_ms", "in [0, duration)",
                    std::to_string(o.ignore_time_at_start_ms));
}

void check_sims(const neuronio_file& file, std::span<const int> sims) {
    for (int s : sims)
        if (s < 0 || s >= static_cast<int>(file.simulations.size()))
            throw error(file.source, "simulation",
                        "an index in [0, " + std::to_string(file.simulations.size()) + ")",
                        std::to_string(s));
}

}  // namespace

template <class T>
sparse_input<T> neuronio_window_input(const neuronio_file& file, std::span<const int> sims,
                                      std::span<const int> starts, int window) {
    check_sims(file, sims);
    if (starts.size() != sims.size())
        throw error(file.source, "starts", std::to_string(sims.size()) + " window starts",
                    std::to_string(starts.size()));
    if (window < 1) throw error(file.source, "window", ">= 1", std::to_string(window));
    sparse_input<T> x;
    x.batch = static_cast<int>(sims.size());
    x.time = window;
    x.num_input = file.num_channels();
    x.offsets.reserve(static_cast<std::size_t>(x.batch) * window + 1);
    x.offsets.push_back(0);
    for (std::size_t b = 0; b < sims.size(); ++b) {
        const auto& sim = file.simulations[static_cast<std::size_t>(sims[b])];
        const int start = starts[b];
        if (start < 0) throw error(file.source, "start", ">= 0", std::to_string(start));
        // Events are sorted by time: find the window's first event, then walk step by step. Steps past the
        // end of the simulation get no events (the published zero padding).
        auto e = static_cast<std::size_t>(
            std::lower_bound(sim.event_time.begin(), sim.event_time.end(), start) - sim.event_time.begin());
        for (int t = start; t < start + window; ++t) {
            for (; e < sim.event_time.size() && sim.event_time[e] == t; ++e) {
                x.channels.push_back(sim.event_channel[e]);
                x.values.push_back(T(neuronio_synapse_sign(sim.event_channel[e], file.num_segments)));
            }
            x.offsets.push_back(static_cast<std::int64_t>(x.values.size()));
        }
    }
    return x;
}

template <class T>
sparse_input<T> neuronio_window_input(const neuronio_file& file, std::span<const int> sims, int start,
                                      int window) {
    const std::vector<int> starts(sims.size(), start);
    return neuronio_window_input<T>(file, sims, starts, window);
}

template <class T>
void neuronio_window_targets(const neuronio_file& file, std::span<const int> sims,
                             std::span<const int> starts, int window, std::vector<T>& spike,
                             std::vector<T>& soma, const neuronio_constants& k) {
    check_sims(file, sims);
    spike.resize(sims.size() * static_cast<std::size_t>(window));
    soma.resize(spike.size());
    std::size_t i = 0;
    for (std::size_t b = 0; b < sims.size(); ++b) {
        const int start = starts[b];
        if (start < 0 || start + window > file.duration_ms)
            throw error(file.source, "window", "inside [0, " + std::to_string(file.duration_ms) + ")",
                        "[" + std::to_string(start) + ", " + std::to_string(start + window) + ")");
        const auto& sim = file.simulations[static_cast<std::size_t>(sims[b])];
        for (int t = start; t < start + window; ++t, ++i) {
            spike[i] = T(sim.spike[static_cast<std::size_t>(t)]);
            // Training target (published): (min(v, -55) - (-67.7)) * 0.1.
            const double v =
                std::min(static_cast<double>(sim.soma_mv[static_cast<std::size_t>(t)]), k.soma_threshold_mv);
            soma[i] = T((v - k.soma_bias_mv) * k.soma_train_scale);
        }
    }
}

template <class T>
neuronio_predictions predict_neuronio(const model<T>& m, const neuronio_file& file,
                                      const neuronio_eval_options& o) {
    if (m.config().num_input != file.num_channels())
        throw error(file.source, "num_segments",
                    std::to_string(m.config().num_input) + " input channels (the model's num_input)",
                    std::to_string(file.num_channels()));
    if (m.config().num_output < 2)
        throw error(file.source, "model", "num_output >= 2 (spike logit, soma)",
                    std::to_string(m.config().num_output));
    if (o.burn_in < 0 || o.burn_in >= o.window)
        throw error("eval options", "burn_in", "in [0, window)", std::to_string(o.burn_in));
    const int D = file.duration_ms, W = o.window, B = o.burn_in, d_o = m.config().num_output;
    const int S = static_cast<int>(file.simulations.size());
    neuronio_predictions p;
    p.source = file.source;
    p.num_simulations = S;
    p.duration_ms = D;
    const std::size_t n = static_cast<std::size_t>(S) * D;
    p.spike_prob.assign(n, 0.0);
    p.soma_raw_mv.assign(n, 0.0);
    // num_test_splits = int(2 + (D - W)/(W - B)) (Python float division, truncated toward zero).
    const int splits = static_cast<int>(2.0 + static_cast<double>(D - W) / static_cast<double>(W - B));
    // The windows cover [0, D) unless the burn-in outlasts the simulations (then the published code scores
    // the zeros it started from: no window runs at all).
    if (splits < 1 || static_cast<double>(splits - 1) * (W - B) + W < D)
        throw error(file.source, "burn_in",
                    "at most the simulations' duration (" + std::to_string(D) +
                        " ms), so that the windows cover every millisecond",
                    std::to_string(B) + " ms (window " + std::to_string(W) + " ms)");
    std::vector<T> y;
    workspace<T> ws;
    for (int s0 = 0; s0 < S; s0 += o.batch_simulations) {
        std::vector<int> sims(static_cast<std::size_t>(std::min(o.batch_simulations, S - s0)));
        std::iota(sims.begin(), sims.end(), s0);
        for (int k = 0; k < splits; ++k) {
            const int start = k * (W - B);
            if (start >= D) break;
            // Steps past the end are zero input whose outputs nobody reads, and a step's output depends only
            // on earlier ones: run the window up to the end of the simulations only (a window far longer than
            // the simulations costs nothing).
            const int steps = std::min(W, D - start);
            const auto x = neuronio_window_input<T>(file, sims, start, steps);
            y.resize(static_cast<std::size_t>(x.batch) * steps * d_o);
            m.infer(x, y, ws);  // nothing kept for backward
            // Window 0 writes [0, W); later windows write [start + B, min(start + W, D)).
            const int t_from = k == 0 ? 0 : B;
            for (int b = 0; b < x.batch; ++b)
                for (int t = t_from; t < steps; ++t) {
                    const T* yt = y.data() + (static_cast<std::size_t>(b) * steps + t) * d_o;
                    const std::size_t i =
                        static_cast<std::size_t>(s0 + b) * D + static_cast<std::size_t>(start + t);
                    p.spike_prob[i] = static_cast<double>(T(1) / (T(1) + std::exp(-yt[0])));
                    p.soma_raw_mv[i] = static_cast<double>(yt[1] / T(o.constants.soma_train_scale));
                }
        }
    }
    p.spike_true.resize(n);
    p.soma_true_mv.resize(n);
    for (int s = 0; s < S; ++s)
        for (int t = 0; t < D; ++t) {
            const auto& sim = file.simulations[static_cast<std::size_t>(s)];
            const std::size_t i = static_cast<std::size_t>(s) * D + t;
            p.spike_true[i] = sim.spike[static_cast<std::size_t>(t)];
            p.soma_true_mv[i] = std::min(static_cast<double>(sim.soma_mv[static_cast<std::size_t>(t)]),
                                         o.constants.soma_threshold_mv) -
                                o.constants.soma_bias_mv;
        }
    // Soma predictions z-scored and re-scaled to the file's GT mean and (population) std, over all
    // simulations and times, before any filtering (published; "for comparability to previous methods").
    auto mean_std = [](const std::vector<double>& v) {
        double mean = 0;
        for (double a : v) mean += a;
        mean /= static_cast<double>(v.size());
        double var = 0;
        for (double a : v) var += (a - mean) * (a - mean);
        return std::pair{mean, std::sqrt(var / static_cast<double>(v.size()))};
    };
    const auto [pm, ps] = mean_std(p.soma_raw_mv);
    const auto [gm, gs] = mean_std(p.soma_true_mv);
    p.soma_pred_mv.resize(n);
    for (std::size_t i = 0; i < n; ++i)
        p.soma_pred_mv[i] = ps > 0 ? (p.soma_raw_mv[i] - pm) / ps * gs + gm : gm;
    return p;
}

neuronio_evaluation evaluate_neuronio(const std::vector<neuronio_predictions>& files,
                                      const neuronio_eval_options& o) {
    std::vector<double> spike_true, spike_prob, soma_true, soma_pred;
    neuronio_evaluation result;
    for (const auto& f : files) {
        const int D = f.duration_ms;
        check_ignore_time(f.source, D, o);
        for (int s = 0; s < f.num_simulations; ++s) {
            const std::size_t row = static_cast<std::size_t>(s) * D;
            double count = 0;
            for (int t = 0; t < D; ++t) count += f.spike_true[row + t];
            ++result.simulations_total;
            if (!kept_simulation(count, o)) continue;
            ++result.simulations_kept;
            for (int t = o.ignore_time_at_start_ms; t < D; ++t) {
                spike_true.push_back(f.spike_true[row + t]);
                spike_prob.push_back(f.spike_prob[row + t]);
                soma_true.push_back(f.soma_true_mv[row + t]);
                soma_pred.push_back(f.soma_pred_mv[row + t]);
            }
        }
    }
    // The ROC needs both classes among the scored milliseconds; without them only the soma metrics are
    // defined (compute_neuronio_metrics gives NaN spike metrics).
    result.spike_metrics_undefined = neuronio_spike_metrics_undefined(
        {static_cast<std::int64_t>(std::count(spike_true.begin(), spike_true.end(), 1.0)),
         static_cast<std::int64_t>(spike_true.size())},
        files.empty() ? std::string("evaluation") : files.front().source, o);
    result.metrics = compute_neuronio_metrics(spike_true, spike_prob, soma_true, soma_pred, o.desired_fp);
    if (result.spike_metrics_undefined.empty()) result.roc = roc_curve(spike_true, spike_prob);
    result.samples = static_cast<std::int64_t>(spike_true.size());
    return result;
}

neuronio_scored_counts count_neuronio_scored(const neuronio_file& file, const neuronio_eval_options& o) {
    check_ignore_time(file.source, file.duration_ms, o);
    neuronio_scored_counts c;
    for (const auto& sim : file.simulations) {
        if (!kept_simulation(static_cast<double>(std::count(sim.spike.begin(), sim.spike.end(), 1)), o))
            continue;
        c.spikes += std::count(sim.spike.begin() + o.ignore_time_at_start_ms, sim.spike.end(), 1);
        c.samples += file.duration_ms - o.ignore_time_at_start_ms;
    }
    return c;
}

std::string neuronio_spike_metrics_undefined(const neuronio_scored_counts& c, const std::string& source,
                                             const neuronio_eval_options& o) {
    if (c.samples == 0)
        throw error(source, "simulations",
                    "at least one simulation with " + std::to_string(o.min_spikes) + "-" +
                        std::to_string(o.max_spikes) + " output spikes",
                    "none");
    if (c.spikes > 0 && c.spikes < c.samples) return "";
    return (c.spikes == 0 ? "no output spike after the first " + std::to_string(o.ignore_time_at_start_ms) +
                                " ms of any kept simulation"
                          : std::string("an output spike in every scored millisecond")) +
           ": the spike metrics (AUC, TP and AUC @ FP) and the ROC curve are undefined";
}

template sparse_input<float> neuronio_window_input<float>(const neuronio_file&, std::span<const int>, int,
                                                          int);
template sparse_input<double> neuronio_window_input<double>(const neuronio_file&, std::span<const int>, int,
                                                            int);
template sparse_input<float> neuronio_window_input<float>(const neuronio_file&, std::span<const int>,
                                                          std::span<const int>, int);
template sparse_input<double> neuronio_window_input<double>(const neuronio_file&, std::span<const int>,
                                                            std::span<const int>, int);
template void neuronio_window_targets<float>(const neuronio_file&, std::span<const int>, std::span<const int>,
                                             int, std::vector<float>&, std::vector<float>&,
                                             const neuronio_constants&);
template void neuronio_window_targets<double>(const neuronio_file&, std::span<const int>,
                                              std::span<const int>, int, std::vector<double>&,
                                              std::vector<double>&, const neuronio_constants&);
template neuronio_predictions predict_neuronio<float>(const model<float>&, const neuronio_file&,
                                                      const neuronio_eval_options&);
template neuronio_predictions predict_neuronio<double>(const model<double>&, const neuronio_file&,
                                                       const neuronio_eval_options&);

}  // namespace elm
