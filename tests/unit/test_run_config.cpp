// The run config of `elmneuron train` (parse_run_config, docs/training.md): every value given is the value
// used, and every bad key or value is an elm::error naming the config file and the key path, table by table.

#include <elmneuron/error.hpp>
#include <elmneuron/trainer.hpp>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using nlohmann::json;

// A complete config: every train key set to a value other than its default.
json full_config() {
    return json::parse(R"({
      "model": {"num_input": 1278, "num_output": 2, "num_memory": 15, "num_branch": 45,
                "num_synapse_per_branch": 100, "input_to_synapse_routing": "neuronio_routing"},
      "train": {"batch_size": 3, "batches_per_epoch": 7, "num_epochs": 2, "learning_rate": 0.002,
                "input_window_size": 400, "burn_in_time": 120, "file_load_fraction": 0.5,
                "num_prefetch_batch": 9, "num_workers": 4, "optimizer": "adamax", "schedule": "constant",
                "weight_decay": 0.01, "clip_grad_norm": 1.5, "loss_burn_in": 50,
                "ignore_time_from_start": 250, "seed": 42, "checkpoint_every": 11, "precision": "f64",
                "threads": 1, "select_metric": "AUC", "valid_files": 2},
      "data": {"train": ["a", "b"], "valid": "v", "test": ["t"], "cache_dir": "cache"},
      "out_dir": "runs/x"
    })");
}

TEST(run_config, every_value_given_is_the_value_used) {
    const auto c = elm::parse_run_config(full_config().dump(), "full.json");
    const auto& t = c.train;
    EXPECT_EQ(t.batch_size, 3);
    EXPECT_EQ(t.batches_per_epoch, 7);
    EXPECT_EQ(t.num_epochs, 2);
    EXPECT_EQ(t.learning_rate, 0.002);
    EXPECT_EQ(t.input_window_size, 400);
    EXPECT_EQ(t.burn_in_time, 120);
    EXPECT_EQ(t.file_load_fraction, 0.5);
    EXPECT_EQ(t.num_prefetch_batch, 9);
    EXPECT_EQ(t.optimizer, "adamax");
    EXPECT_EQ(t.schedule, "constant");
    EXPECT_EQ(t.weight_decay, 0.01);
    EXPECT_EQ(t.clip_grad_norm, 1.5);
    EXPECT_EQ(t.loss_burn_in, 50);
    EXPECT_EQ(t.ignore_time_from_start, 250);
    EXPECT_EQ(t.seed, 42u);
    EXPECT_EQ(t.checkpoint_every, 11);
    EXPECT_EQ(t.precision, "f64");
    EXPECT_EQ(t.threads, 1);
    EXPECT_EQ(t.select_metric, "AUC");
    EXPECT_EQ(t.valid_files, 2);
    EXPECT_EQ(c.data.train, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(c.data.valid, (std::vector<std::string>{"v"}));
    EXPECT_EQ(c.data.test, (std::vector<std::string>{"t"}));
    EXPECT_EQ(c.data.cache_dir, "cache");
    EXPECT_EQ(c.out_dir, "runs/x");
    EXPECT_EQ(c.model.num_memory, 15);
    EXPECT_EQ(c.model.num_branch, 45);

    // Written back (config.json of a run) and read again: the same settings.
    const auto again = elm::parse_run_config(elm::to_json(c), "config.json");
    EXPECT_EQ(elm::to_json(again), elm::to_json(c));
    EXPECT_EQ(again.train.optimizer, "adamax");
    EXPECT_EQ(again.train.seed, 42u);
    EXPECT_EQ(again.data.train, c.data.train);
}

TEST(run_config, published_defaults_where_keys_are_left_out) {
    // The published train_config.json values (docs/training.md) for every key not given.
    const auto c = elm::parse_run_config(
        R"({"model": {"num_input": 4, "num_output": 2}, "data": {"train": "d"}})", "min.json");
    EXPECT_EQ(c.train.batch_size, 8);
    EXPECT_EQ(c.train.batches_per_epoch, 10000);
    EXPECT_EQ(c.train.num_epochs, 35);
    EXPECT_EQ(c.train.learning_rate, 5e-4);
    EXPECT_EQ(c.train.input_window_size, 500);
    EXPECT_EQ(c.train.burn_in_time, 150);
    EXPECT_EQ(c.train.file_load_fraction, 0.3);
    EXPECT_EQ(c.train.optimizer, "adam");
    EXPECT_EQ(c.train.schedule, "cosine");
    EXPECT_EQ(c.train.loss_burn_in, 0);
    EXPECT_EQ(c.train.select_metric, "soma_RMSE");
    EXPECT_TRUE(c.data.valid.empty());
}

struct bad_case {
    const char* pointer;  // JSON pointer of the value to set (or remove, with a null value)
    json value;
    const char* field;  // the key path the error must name
};

TEST(run_config, bad_keys_and_values_name_the_file_and_the_key) {
    const std::vector<bad_case> cases = {
        {"/frobnicate", 1, "frobnicate"},
        {"/train/frobnicate", 1, "train.frobnicate"},
        {"/data/frobnicate", 1, "data.frobnicate"},
        {"/model/frobnicate", 1, "frobnicate"},
        {"/train/batch_size", 0, "train.batch_size"},
        {"/train/batch_size", -1000000, "train.batch_size"},
        {"/train/batch_size", "8", "train.batch_size"},
        {"/train/batch_size", 2.5, "train.batch_size"},
        {"/train/batch_size", 3000000000LL, "train.batch_size"},
        {"/train/batches_per_epoch", 0, "train.batches_per_epoch"},
        {"/train/num_epochs", 0, "train.num_epochs"},
        {"/train/learning_rate", -0.1, "train.learning_rate"},
        {"/train/learning_rate", 11, "train.learning_rate"},
        {"/train/learning_rate", "fast", "train.learning_rate"},
        {"/train/input_window_size", 0, "train.input_window_size"},
        {"/train/burn_in_time", -1, "train.burn_in_time"},
        {"/train/burn_in_time", 400, "train.burn_in_time"},  // not below input_window_size
        {"/train/loss_burn_in", 400, "train.loss_burn_in"},
        {"/train/file_load_fraction", 0, "train.file_load_fraction"},
        {"/train/optimizer", "rmsprop", "train.optimizer"},
        {"/train/schedule", "step", "train.schedule"},
        {"/train/weight_decay", -1, "train.weight_decay"},
        {"/train/clip_grad_norm", -1, "train.clip_grad_norm"},
        {"/train/seed", -1, "train.seed"},
        {"/train/checkpoint_every", 0, "train.checkpoint_every"},
        {"/train/precision", "f16", "train.precision"},
        {"/train/threads", -1, "train.threads"},
        {"/train/select_metric", "accuracy", "train.select_metric"},
        {"/train/valid_files", -1, "train.valid_files"},
        {"/train", json::array(), "train"},
        {"/data/train", 5, "data.train"},
        {"/data/train", json::array({"a", 1}), "data.train"},
        {"/data/train", json::array(), "data.train"},
        {"/data/cache_dir", 3, "data.cache_dir"},
        {"/out_dir", "", "out_dir"},
        {"/out_dir", 7, "out_dir"},
        {"/model/num_output", 1, "model.num_output"},
        {"/model/num_memory", 0, "num_memory"},
        {"/model/lambda_value", 1e39, "lambda_value"},
    };
    for (const auto& bad : cases) {
        json j = full_config();
        j[json::json_pointer(bad.pointer)] = bad.value;
        SCOPED_TRACE(std::string(bad.pointer) + " = " + bad.value.dump());
        try {
            elm::parse_run_config(j.dump(), "bad.json");
            ADD_FAILURE() << "accepted";
        } catch (const elm::error& e) {
            EXPECT_NE(std::string(e.file()).find("bad.json"), std::string::npos) << e.what();
            EXPECT_EQ(e.field(), bad.field) << e.what();
        }
    }
    // Missing sections and keys.
    for (const char* missing : {"/model", "/data", "/data/train"}) {
        json j = full_config();
        const json::json_pointer p(missing);
        j[p.parent_pointer()].erase(p.back());
        EXPECT_THROW(elm::parse_run_config(j.dump(), "bad.json"), elm::error) << missing;
    }
    // Not JSON, and a key twice (a parser would keep one of the two values silently).
    EXPECT_THROW(elm::parse_run_config("{\"model\": ", "bad.json"), elm::error);
    try {
        elm::parse_run_config(R"({"model": {"num_input": 4, "num_output": 2}, "data": {"train": "d"},
                                  "out_dir": "a", "out_dir": "b"})",
                              "bad.json");
        ADD_FAILURE() << "a duplicate key was accepted";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.field(), "out_dir") << e.what();
        EXPECT_NE(std::string(e.what()).find("duplicate"), std::string::npos) << e.what();
    }
}

}  // namespace
