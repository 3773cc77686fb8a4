#include "finetune/summarize.h"

#include "core/error.h"
#include "finetune/template.h"

namespace gpt {

std::vector<SummaryPair> generate_summaries(Generator& gen, const std::vector<Record>& records,
                                            const SummarizeOptions& opt) {
  if (!gen.tokenizer()) fail("summaries need the model's tokenizer");
  if (opt.max_new_tokens < 1) fail("--max-new-tokens must be at least 1");
  GenerateSettings gs;
  gs.max_new_tokens = opt.max_new_tokens;
  gs.sampling.greedy = true;
  gs.stop = {"\n"};
  gs.logprobs = false;
  std::vector<SummaryPair> out;
  out.reserve(records.size());
  for (size_t i = 0; i < records.size(); i++) {
    SummaryPair p;
    const std::string src = require_text(records[i], opt.source_field, opt.path);
    p.reference = require_text(records[i], opt.reference_field, opt.path);
    const std::vector<TokenId> prompt = gen.tokenizer()->encode(summarize_prompt(src));
    p.hypothesis = gen.generate(prompt, gs).at(0).text;
    out.push_back(std::move(p));
    if (opt.progress) opt.progress(i + 1, records.size());
  }
  return out;
}

}  // namespace gpt
