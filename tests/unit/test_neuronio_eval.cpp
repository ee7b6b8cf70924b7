// The NeuronIO evaluation's stitching against the published model's own outputs: the pretrained golden
// cases hold whole 500 ms windows from a zero state, so predicting a 500 ms "file" made of their inputs must
// give exactly their eval_output (sigmoid(spike logit), soma / 0.1) in window 0, for the official models.

#include <elmneuron/error.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/neuronio_task.hpp>
#include <elmneuron/tensor_file.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace {

elm::neuronio_file file_from_golden_input(const elm::tensor& input) {
    const int S = static_cast<int>(input.shape[0]), T = static_cast<int>(input.shape[1]),
              C = static_cast<int>(input.shape[2]);
    const auto x = input.to<double>();
    elm::neuronio_file f;
    f.source = "golden";
    f.num_segments = C / 2;
    f.duration_ms = T;
    for (int s = 0; s < S; ++s) {
        elm::neuronio_simulation sim;
        for (int t = 0; t < T; ++t)
            for (int c = 0; c < C; ++c) {
                const double v = x[(static_cast<std::size_t>(s) * T + t) * C + c];
                if (v == 0) continue;
                // NeuronIO encoding: +1 on excitatory channels, -1 on inhibitory ones.
                EXPECT_EQ(v, elm::neuronio_synapse_sign(c, f.num_segments));
                sim.event_time.push_back(t);
                sim.event_channel.push_back(c);
            }
        sim.spike.assign(static_cast<std::size_t>(T), 0);
        sim.soma_mv.assign(static_cast<std::size_t>(T), -70.f);
        f.simulations.push_back(std::move(sim));
    }
    return f;
}

TEST(neuronio_eval, window_zero_equals_published_model_outputs) {
    for (const std::string name : {"num_memory_15", "num_memory_20", "best_elm_neuron"}) {
        const auto golden =
            elm::read_safetensors(std::string(ELM_GOLDEN_DIR) + "/pretrained_" + name + ".safetensors");
        const auto m = elm::load_model<double>(std::string(ELM_MODELS_DIR) + "/" + name);
        const auto file = file_from_golden_input(golden.at("input"));
        const auto p = elm::predict_neuronio(m, file);
        const auto ref = golden.at("eval_output").to<double>();
        ASSERT_EQ(ref.size(), 2 * p.spike_prob.size());
        double err = 0, norm = 0;
        for (std::size_t i = 0; i < p.spike_prob.size(); ++i) {
            err += std::pow(p.spike_prob[i] - ref[2 * i], 2) + std::pow(p.soma_raw_mv[i] - ref[2 * i + 1], 2);
            norm += ref[2 * i] * ref[2 * i] + ref[2 * i + 1] * ref[2 * i + 1];
        }
        EXPECT_LT(std::sqrt(err / norm), 1e-10) << name;
    }
}

TEST(neuronio_eval, later_windows_only_write_after_the_burn_in) {
    // A 1200 ms file: windows start at 0, 350, 700 (int(2 + 700/350) = 4 splits: 0, 350, 700, 1050); each
    // output after the first window must equal a fresh-state forward of its own window at the same offset.
    const auto golden =
        elm::read_safetensors(std::string(ELM_GOLDEN_DIR) + "/pretrained_num_memory_15.safetensors");
    const auto m = elm::load_model<double>(std::string(ELM_MODELS_DIR) + "/num_memory_15");
    auto base = file_from_golden_input(golden.at("input"));
    elm::neuronio_file f = base;
    f.duration_ms = 1200;
    for (auto& sim : f.simulations) {  // repeat the 500 ms input pattern, shifted, up to 1200 ms
        const auto n = sim.event_time.size();
        for (int shift : {500, 1000})
            for (std::size_t e = 0; e < n && sim.event_time[e] + shift < 1200; ++e) {
                sim.event_time.push_back(sim.event_time[e] + shift);
                sim.event_channel.push_back(sim.event_channel[e]);
            }
        sim.spike.assign(1200, 0);
        sim.soma_mv.assign(1200, -70.f);
    }
    const auto p = elm::predict_neuronio(m, f);
    for (int start : {350, 700, 1050}) {
        const std::vector<int> sims{0, 1};
        const auto x = elm::neuronio_window_input<double>(f, sims, start, 500);
        std::vector<double> y(static_cast<std::size_t>(2) * 500 * 2);
        elm::workspace<double> ws;
        m.forward(x, y, ws);
        for (int s = 0; s < 2; ++s)
            for (int t = 150; t < 500 && start + t < 1200; ++t) {
                const double spike = 1.0 / (1.0 + std::exp(-y[(static_cast<std::size_t>(s) * 500 + t) * 2]));
                EXPECT_DOUBLE_EQ(p.spike_prob[static_cast<std::size_t>(s) * 1200 + start + t], spike)
                    << "window at " << start << ", t " << t;
            }
    }
}

}  // namespace

namespace {

// Without an output spike in the scored milliseconds (a subthreshold test set) the spike metrics and the
// ROC are undefined, NaN as the published scikit-learn code gives, and said why; the soma metrics stand.
TEST(neuronio_eval, data_without_output_spikes_gives_soma_metrics_only) {
    elm::neuronio_predictions p;
    p.source = "quiet.p";
    p.num_simulations = 2;
    p.duration_ms = 1000;
    const std::size_t n = 2000;
    p.spike_prob.assign(n, 0.1);
    p.soma_pred_mv.assign(n, 1.0);
    p.soma_raw_mv.assign(n, 1.0);
    p.spike_true.assign(n, 0.0);
    p.soma_true_mv.assign(n, 2.0);
    p.spike_true[100] = 1;  // in the first 500 ms, which are not scored
    const auto quiet = elm::evaluate_neuronio({p}, {});
    EXPECT_EQ(quiet.simulations_kept, 2);
    EXPECT_EQ(quiet.samples, 1000);
    EXPECT_TRUE(std::isnan(quiet.metrics.auc));
    ASSERT_EQ(quiet.metrics.at_fp.size(), 2u);
    for (const auto& f : quiet.metrics.at_fp) {
        EXPECT_TRUE(std::isnan(f.tp));
        EXPECT_TRUE(std::isnan(f.auc));
    }
    EXPECT_EQ(quiet.metrics.soma_rmse, 1.0);
    EXPECT_EQ(quiet.metrics.soma_mae, 1.0);
    EXPECT_TRUE(quiet.roc.fpr.empty());
    EXPECT_NE(quiet.spike_metrics_undefined.find("no output spike after the first 500 ms"), std::string::npos)
        << quiet.spike_metrics_undefined;
    p.spike_true[1700] = 1;  // one spike after the first 500 ms: every metric defined
    const auto spiking = elm::evaluate_neuronio({p}, {});
    EXPECT_TRUE(spiking.spike_metrics_undefined.empty());
    EXPECT_FALSE(std::isnan(spiking.metrics.auc));
    EXPECT_FALSE(spiking.roc.fpr.empty());
    EXPECT_EQ(spiking.metrics.soma_rmse, 1.0);
    // Nothing kept (every simulation over the spike-count range): nothing to score, an error naming the file.
    elm::neuronio_eval_options narrow;
    narrow.max_spikes = 0;
    try {
        elm::evaluate_neuronio({p}, narrow);
        ADD_FAILURE() << "evaluated with no simulation kept";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), "quiet.p");
    }
}

}  // namespace
