// The subcommands of `scratchnet`, each registered on the top-level app by
// one function. A subcommand's callback throws on failure; run_cli (cli.cpp)
// turns the exception into an exit code and a one-line message.
#pragma once

namespace CLI {
class App;
}

namespace scratchnet::tools {

void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_summary_command(CLI::App& app);

}  // namespace scratchnet::tools
