// elmneuron: command-line front end over the library (README.md, "Quickstart per subcommand").
// Exit status: 0 success, 1 internal failure, 2 bad input or usage (the message names file and field).

#include <elmneuron/error.hpp>

#include "commands.hpp"

#include <cstdio>
#include <exception>
#include <new>
#include <string>

int main(int argc, char** argv) {
    CLI::App app{"elmneuron: Expressive Leaky Memory neurons (Spieler et al., ICLR 2024) in C++"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "elmneuron 0.1.0");
    elm::cli::register_info(app);
    elm::cli::register_convert(app);
    elm::cli::register_run(app);
    elm::cli::register_bench(app);
    elm::cli::register_eval(app);
    elm::cli::register_predict(app);
    elm::cli::register_train(app);
    elm::cli::register_simulate(app);
    // A misspelled subcommand: name it (CLI11 would only say that a subcommand is required).
    if (argc > 1 && argv[1][0] != '-') {
        bool known = false;
        std::string names;
        for (const auto* sub : app.get_subcommands({})) {
            known = known || sub->check_name(argv[1]);
            names += (names.empty() ? "" : ", ") + sub->get_name();
        }
        if (!known) {
            std::fprintf(stderr,
                         "elmneuron: unknown subcommand '%s'; expected one of: %s (elmneuron --help)\n",
                         argv[1], names.c_str());
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    } catch (const elm::error& e) {
        std::fprintf(stderr, "elmneuron: %s\n", e.what());
        return 2;
    } catch (const std::bad_alloc&) {
        // The size of the request (a batch, sequence, window or traces far larger than memory), not a fault.
        std::fprintf(stderr,
                     "elmneuron: out of memory: this request needs more memory than the machine can give; "
                     "make it smaller (--batch, --time, --window, the input, or fewer traces)\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "elmneuron: internal error: %s\n", e.what());
        return 1;
    }
    return 0;
}
