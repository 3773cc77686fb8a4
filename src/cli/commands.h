// Each subcommand registers its options and its action on the CLI11 app (src/cli/cmd_*.cpp).
#pragma once
#include <CLI/CLI.hpp>

namespace gpt::cli {

void add_tokenize_commands(CLI::App& app);   // tokenize, detokenize
void add_bpe_train_commands(CLI::App& app);  // bpe-train, char-vocab
void add_bench_command(CLI::App& app);       // bench tokenizer
void add_info_command(CLI::App& app);        // info

}  // namespace gpt::cli
