// elmneuron simulate --config FILE --out DIR: NeuronIO-protocol data from the NEURON simulator. The
// simulation itself runs in NEURON's Python interface (tools/neuron/simulate.py, Debian's python3-neuron);
// this subcommand is the CLI's front door to it and passes the options through. For MPI, run the script under
// mpirun directly (tools/neuron/README.md).

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include "commands.hpp"
#include "common.hpp"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

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
        create_output_folder(out);  // a clear error here, not a Python traceback (a bad config then leaves
                                    // this folder empty: the generator checks the config)
        std::string python = std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        if (const char* env = std::getenv("ELM_PYTHON")) python = env;
        const std::string script = std::string(ELM_SOURCE_DIR) + "/tools/neuron/simulate.py";
        std::string cmdline = "'" + python + "' '" + script + "' --config '" + config + "' --out '" + out +
                              "' --workers " + std::to_string(workers);
        if (resume) cmdline += " --resume";
        if (!cell.empty()) cmdline += " --cell '" + cell + "'";
        if (!mechanisms.empty()) cmdline += " --mechanisms '" + mechanisms + "'";
        const int rc = std::system(cmdline.c_str());
        if (rc != 0)
            throw error(config, "simulate", "tools/neuron/simulate.py to finish",
                        "exit status " + std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : rc),
                        "its messages above say what failed");
    });
}

}  // namespace elm::cli
