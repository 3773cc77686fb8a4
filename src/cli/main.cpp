// gpt: the command-line front end. A thin layer: parse options, call the engine, print.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"
#include "core/parallel.h"

namespace {

// Every command's --threads gets the same check (core/parallel.h): a count this machine cannot run
// is a one-line error before anything starts, never thousands of threads or a hang.
void check_thread_options(CLI::App* app) {
  for (CLI::Option* o : app->get_options())
    if (o->get_name() == "--threads")
      o->check(CLI::Validator(
          [](std::string& s) -> std::string {
            char* end = nullptr;
            const long n = std::strtol(s.c_str(), &end, 10);
            if (end == s.c_str() || *end != '\0') return "";  // not a number: the option says so
            if (n < 0) return "must not be negative";
            if (n == 0) return "";  // the default
            return gpt::thread_count_problem(static_cast<int>(std::min<long>(n, 1L << 30)));
          },
          "", "threads"));
  for (CLI::App* sub : app->get_subcommands([](CLI::App*) { return true; })) check_thread_options(sub);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "gpt.cpp: tokenize, train, fine-tune, evaluate, generate with and serve GPT models.\n"
      "Run `gpt COMMAND --help` for the options of a command.",
      "gpt"};
  // A write past a file-size limit fails with EFBIG (reported as an error) instead of killing us.
  std::signal(SIGXFSZ, SIG_IGN);
  app.require_subcommand(0, 1);  // none given: handled below with a clearer message
  app.set_version_flag("--version", "gpt.cpp " GPT_VERSION);
  gpt::cli::add_tokenize_commands(app);
  gpt::cli::add_bpe_train_commands(app);
  gpt::cli::add_bench_command(app);
  gpt::cli::add_info_command(app);
  gpt::cli::add_model_commands(app);
  gpt::cli::add_eval_command(app);
  gpt::cli::add_generate_command(app);
  gpt::cli::add_convert_command(app);
  gpt::cli::add_train_command(app);
  gpt::cli::add_prepare_command(app);
  gpt::cli::add_quantize_command(app);
  CLI::App* finetune = gpt::cli::add_finetune_command(app);
  gpt::cli::add_chat_command(app);
  gpt::cli::add_finetune_classify(finetune);
  gpt::cli::add_classify_command(app);
  gpt::cli::add_lora_commands(app);
  gpt::cli::add_attention_command(app);
  gpt::cli::add_inspect_command(app);
  gpt::cli::add_serve_command(app);
  gpt::cli::add_embed_command(app);
  check_thread_options(&app);
  gpt::fit_threads_to_address_space();
  try {
    app.parse(argc, argv);
    if (app.get_subcommands().empty()) {
      std::fprintf(stderr, "gpt: error: no command given (see gpt --help)\n");
      return 2;
    }
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "gpt: error: %s (see gpt --help)\n", e.what());
    return 2;
  } catch (const gpt::Error& e) {
    std::fprintf(stderr, "gpt: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "gpt: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
