// Summarization as evaluated after fine-tuning (`gpt eval --rouge --generate`): each record's source
// text under GPT-2's "TL;DR: " prompt (template.h summarize_prompt), decoded greedily up to the first
// newline or <|endoftext|>, beside the record's reference summary. Scored by eval/rouge.h.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "finetune/records.h"
#include "generate/generator.h"

namespace gpt {

struct SummaryPair {
  std::string hypothesis, reference;
};

struct SummarizeOptions {
  std::string source_field = "text", reference_field = "summary";
  int max_new_tokens = 64;
  std::string path;  // the records' file, for errors
  std::function<void(size_t done, size_t total)> progress;  // after each record (may be empty)
};

// `gen` needs a tokenizer. Throws gpt::Error naming the file and line of a record without the fields.
std::vector<SummaryPair> generate_summaries(Generator& gen, const std::vector<Record>& records,
                                            const SummarizeOptions& opt);

}  // namespace gpt
