// elmneuron simulate --config FILE --out DIR: NeuronIO-protocol data from the NEURON simulator. The
// simulation itself runs in NEURON's Python interface (tools/neuron/simulate.py, Debian's python3-neuron);
// this subcommand is the CLI's front door to it and passes the options through. For MPI, run the script under
// mpirun directly (tools/neuron/README.md).

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include "commands.hpp"
#include "common.hpp"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace elm::cli {

void register_simulate(CLI::App& app) {
    auto* cmd = app.add_subcommand("simulate", "Make NeuronIO-protocol data with the NEURON simulator");
    static std::string config, out, cell, mechanisms;
    static int workers = 1;
    static bool resume = false;
    cmd->add_option("-c,--config", config, "Simulation config JSON (see tools/neuron/README.md)")->required();
    cmd->add_option("-o,--out", out, "Output folder for the pickles and their JSON sidecars")->required();
    cmd->add_option("-w,--workers", workers, "Worker processes (results do not depend on it)")
        ->check(positive_number());
    cmd->add_flag("--resume", resume, "Skip files that are already complete");
    cmd->add_option("--cell", cell, "Cell plug-in module.py:ClassName");
    cmd->add_option("--mechanisms", mechanisms, "Compiled mechanism library (.so)");
    cmd->callback([] {
        namespace fs = std::filesystem;
        if (!fs::exists(config)) throw file_not_found_error(config);
        create_output_folder(out, "--out");  // a clear error here, not a Python traceback (a bad config then
                                             // leaves this folder empty: the generator checks the config)
        const folder_lock lock(out, "--out");  // one generator per folder
        std::vector<std::string> argv{python_interpreter(),
                                      std::string(ELM_SOURCE_DIR) + "/tools/neuron/simulate.py",
                                      "--config",
                                      config,
                                      "--out",
                                      out,
                                      "--workers",
                                      std::to_string(workers)};
        if (resume) argv.push_back("--resume");
        if (!cell.empty()) argv.insert(argv.end(), {"--cell", cell});
        if (!mechanisms.empty()) argv.insert(argv.end(), {"--mechanisms", mechanisms});
        ::setenv("ELM_SIMULATE_LOCK_HELD", "1", 1);   // the generator takes the folder's lock when run alone
        const int rc = run_program(argv, lock.fd());  // the lock lasts until the generator has gone too
        if (rc == 2)  // the generator's own status for a bad config or data (its message above)
            throw error(config, "simulate", "a config the generator accepts", "exit status 2",
                        "its messages above say what failed");
        if (rc != 0)  // a crash, or killed (e.g. 137: by the kernel for memory): not the input's fault
            throw std::runtime_error(
                "tools/neuron/simulate.py failed with exit status " + std::to_string(rc) +
                (rc > 128 ? " (killed by signal " + std::to_string(rc - 128) + ")" : "") +
                "; its messages above say more");
    });
}

}  // namespace elm::cli
