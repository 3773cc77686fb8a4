// gpt chat: a multi-turn conversation with a model tuned on the chat template
// (finetune/template.h). User turns come from standard input, one per line (a terminal or a pipe);
// each reply streams to standard output and ends at <|endoftext|>. The history is kept and its
// oldest turns dropped when the prompt plus --max-new-tokens would not fit the context.
// /reset clears the history, /exit (or end of input) ends. See docs/instruction-tuning.md.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/parallel.h"
#include "finetune/template.h"
#include "generate/generator.h"
#include "io/model_dir.h"

namespace gpt::cli {
namespace {

struct ChatArgs {
  std::string model, system;
  GenerateSettings s;
  std::optional<uint64_t> seed;
  std::optional<int> max_new;  // unset: 256, at most half the context
  int threads = 0;
};

void run_chat(ChatArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  GenerateSettings& s = a.s;
  s.num_samples = 1;
  s.logprobs = false;
  s.stop_at_eot = true;
  // A model that forgets to end its turn would go on to write the user's: stop at the next header.
  s.stop = {"\n### "};
  s.max_new_tokens = a.max_new ? *a.max_new : 1;  // the default needs the model's context (below)
  s.sampling.seed = a.seed ? *a.seed : std::random_device{}();
  s.validate();
  LoadedModel lm = load_for_inference(a.model);  // NaN weights fail
  Generator gen(lm.model, lm.tokenizer);
  if (!gen.tokenizer()) fail("{} has no vocabulary files: chat needs its tokenizer", a.model);
  const Tokenizer& tok = *gen.tokenizer();
  require_eot(tok);
  const int n_ctx = lm.model.config().n_ctx;
  if (!a.max_new) s.max_new_tokens = std::max(1, std::min(256, n_ctx / 2));
  if (s.max_new_tokens >= n_ctx)
    fail("--max-new-tokens {} leaves no room for the conversation in the context of {}", s.max_new_tokens,
         n_ctx);
  const size_t budget = static_cast<size_t>(n_ctx - s.max_new_tokens);

  std::vector<ChatMessage> history;
  auto reset = [&] {
    history.clear();
    if (!a.system.empty()) history.push_back({"system", a.system});
  };
  reset();
  const bool tty = isatty(0) && isatty(2);
  bool told = false;
  std::string line;
  for (;;) {
    if (tty) std::fprintf(stderr, "you> ");
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      reset();
      std::fprintf(stderr, "(history cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    history.push_back({"user", line});
    if (fit_chat_history(history, tok, budget) > 0 && !told) {
      std::fprintf(stderr,
                   "gpt: note: the conversation is longer than the context (%d tokens) allows: "
                   "dropping its oldest turns\n",
                   n_ctx);
      told = true;
    }
    std::vector<TokenId> ids = chat_prompt_ids(tok, history);
    if (ids.size() > budget) {  // one message alone is too long: keep its end
      std::fprintf(stderr, "gpt: warning: the message is too long for the context: using its last part\n");
      ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(budget));
    }
    if (tty) std::fprintf(stderr, "assistant> ");
    std::string reply;
    gen.generate(ids, s, [&](const TokenEvent& ev) {
      write_stdout(ev.text);
      reply += ev.text;
    });
    write_stdout("\n");
    history.push_back({"assistant", reply});
    s.sampling.seed++;  // the next turn draws afresh
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  a->s.sampling.temperature = 0.7f;
  CLI::App* c = app.add_subcommand(
      "chat", "Talk with a chat-tuned model: one user turn per line on standard input; /reset, /exit");
  c->add_option("--model,-m", a->model, "Model directory")->option_text("DIR")->required();
  c->add_option("--system", a->system, "A system message at the start of the conversation")
      ->option_text("TEXT");
  c->add_option("--max-new-tokens,-n", a->max_new,
                "Longest reply in tokens (default 256, or half the context when that is shorter)")
      ->option_text("N")
      ->check(CLI::Range(1, 1 << 20).description(""));
  c->add_flag("--greedy", a->s.sampling.greedy, "Always take the most probable token");
  c->add_option("--temperature,-t", a->s.sampling.temperature, "Sampling temperature (default 0.7)")
      ->option_text("T");
  c->add_option("--top-k", a->s.sampling.top_k, "Keep the K most probable tokens (default 50)")
      ->option_text("K");
  c->add_option("--top-p", a->s.sampling.top_p, "Nucleus sampling threshold (default 1 = off)")
      ->option_text("P");
  c->add_option("--seed", a->seed, "Random seed (default: a random one)")->option_text("S");
  c->add_option("--threads", a->threads, "Threads (default: all cores)")->option_text("N");
  c->callback([a] { run_chat(*a); });
}

}  // namespace gpt::cli
