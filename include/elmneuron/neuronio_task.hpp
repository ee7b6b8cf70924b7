#pragma once
// The NeuronIO task on top of the reader (neuronio.hpp) and the model: model inputs and training targets
// for windows of simulations, the published evaluation protocol (reference/paper.md §5: stitched windows
// with burn-in and state reset, sigmoid spikes, soma / 0.1, per-file soma z-scoring, 0-24 spike filter,
// first 500 ms dropped) and its metrics (metrics.hpp).

#include <elmneuron/metrics.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/neuronio.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace elm {

// Published constants (ELM neuronio_data_utils.py / neuronio_eval_utils.py).
struct neuronio_constants {
    double soma_threshold_mv = -55.0;  // soma clipped at this value
    double soma_bias_mv = -67.7;       // subtracted
    double soma_train_scale =
        0.1;  // training target = (clip(v) - bias) · scale; model soma output / scale = mV
};

// Inputs x̃ = events · synapse sign for simulations `sims` of `file`, window [start, start + window); steps
// past the file's end are zero input (the published zero padding). Batch order = order of `sims`.
template <class T>
sparse_input<T> neuronio_window_input(const neuronio_file& file, std::span<const int> sims, int start,
                                      int window);
// The same with one window start per simulation (training batches: published generator draws one per sample).
template <class T>
sparse_input<T> neuronio_window_input(const neuronio_file& file, std::span<const int> sims,
                                      std::span<const int> starts, int window);

// Training targets for the same windows: spike [B][window] (0/1) and soma [B][window] = (min(v, -55)
// + 67.7)·0.1.
template <class T>
void neuronio_window_targets(const neuronio_file& file, std::span<const int> sims,
                             std::span<const int> starts, int window, std::vector<T>& spike,
                             std::vector<T>& soma, const neuronio_constants& k = {});

struct neuronio_eval_options {
    int window = 500;   // input_window_size
    int burn_in = 150;  // overlap between windows; outputs before it are discarded (k > 0)
    int ignore_time_at_start_ms = 500;
    int min_spikes = 0, max_spikes = 24;  // kept simulations: total output spikes (whole file) in range
    int batch_simulations = 32;  // simulations per forward call (memory only; results do not depend on it)
    std::vector<double> desired_fp = {0.0025, 0.0100};
    neuronio_constants constants;
};

// Full-length predictions of one file (all simulations), as the published code produces before filtering.
struct neuronio_predictions {
    std::string source;
    int num_simulations = 0, duration_ms = 0;
    std::vector<double> spike_prob;    // [sim][t] sigmoid(spike logit)
    std::vector<double> soma_pred_mv;  // [sim][t] soma output / 0.1, z-scored and re-scaled to the file's GT
    std::vector<double> soma_raw_mv;   // [sim][t] soma output / 0.1 before re-scaling
    std::vector<double> spike_true;    // [sim][t] 0/1
    std::vector<double> soma_true_mv;  // [sim][t] min(v, -55) + 67.7 (no 0.1 scale)
};

// Window k starts at k·(window - burn_in), k < int(2 + (duration - window)/(window - burn_in)); the model
// state is reset in every window; window 0 writes all its outputs, later ones only those after the burn-in.
template <class T>
neuronio_predictions predict_neuronio(const model<T>& m, const neuronio_file& file,
                                      const neuronio_eval_options& options = {});

struct neuronio_evaluation {
    neuronio_metrics metrics;
    roc_curve_result roc;  // of the kept, trimmed samples (for plots); empty when undefined
    int simulations_total = 0, simulations_kept = 0;
    std::int64_t samples = 0;  // kept simulations x scored ms
    // Why the spike metrics (and the ROC) are undefined, NaN in `metrics`: no output spike in the scored
    // milliseconds (a subthreshold test set) or one in every one. Empty when they are defined.
    std::string spike_metrics_undefined;
};

// Concatenates files, keeps simulations within the spike-count range, drops the first ms, computes metrics
// (elm::error when no simulation is kept: there is nothing to score).
neuronio_evaluation evaluate_neuronio(const std::vector<neuronio_predictions>& files,
                                      const neuronio_eval_options& options = {});

// The ground truth's part of evaluate_neuronio, for checking data before a model exists: output spikes and
// milliseconds in the scored part of `file` (its kept simulations after the first ms).
struct neuronio_scored_counts {
    std::int64_t spikes = 0, samples = 0;
    neuronio_scored_counts& operator+=(const neuronio_scored_counts& o) {
        spikes += o.spikes;
        samples += o.samples;
        return *this;
    }
};
neuronio_scored_counts count_neuronio_scored(const neuronio_file& file,
                                             const neuronio_eval_options& options = {});
// neuronio_evaluation::spike_metrics_undefined for these counts ("" when the spike metrics are defined);
// elm::error naming `source` when nothing is scored (no simulation kept).
std::string neuronio_spike_metrics_undefined(const neuronio_scored_counts& counts, const std::string& source,
                                             const neuronio_eval_options& options = {});

}  // namespace elm
