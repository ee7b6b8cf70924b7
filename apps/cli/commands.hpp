#pragma once
// Subcommands of the `elmneuron` CLI: each file registers one subcommand on the app; they only parse
// options, call the library's public API and print. One file per subcommand.

#include <CLI/CLI.hpp>

namespace elm::cli {

void register_info(CLI::App& app);
void register_convert(CLI::App& app);
void register_run(CLI::App& app);
void register_bench(CLI::App& app);
void register_eval(CLI::App& app);
void register_predict(CLI::App& app);
void register_train(CLI::App& app);
void register_simulate(CLI::App& app);

}  // namespace elm::cli
