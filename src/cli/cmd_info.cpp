// gpt info: what this build is and what it runs on.
#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/cpu.h"
#include "core/parallel.h"

namespace gpt::cli {

void add_info_command(CLI::App& app) {
  CLI::App* c = app.add_subcommand(
      "info", "Show the build, the CPU features used for dispatch, and the bundled vocabulary");
  c->callback([] {
    auto tok = gpt2_tokenizer();
    std::string s;
    s += fmt::format("gpt.cpp {}\n", GPT_VERSION);
    s += fmt::format("cpu:        {}\n", cpu().summary());
    s += fmt::format("threads:    {}\n", num_threads());
    s += fmt::format("vocabulary: bundled GPT-2 byte-level BPE, {} tokens, <|endoftext|> = {}\n",
                     tok->vocab_size(), tok->eot_token().value_or(0));
    write_stdout(s);
  });
}

}  // namespace gpt::cli
