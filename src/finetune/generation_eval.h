// Generate and score a fine-tune (gpt eval --generate): each record's prompt under a fine-tuning
// template (template.h record_generation_task: alpaca, chat or summarize, the prompt training
// rendered), the model's answer (greedy by default, or sampled with a per-record seed) up to the
// template's stop string, <|endoftext|> or max_new_tokens, beside the record's reference; the pairs
// optionally written as JSONL and scored by eval/text_metrics.h. See docs/task-eval.md.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "eval/text_metrics.h"
#include "finetune/records.h"
#include "finetune/template.h"
#include "generate/generator.h"

namespace gpt {

struct GenerationEvalOptions {
  PromptTemplate tmpl;              // a built-in kind (Auto: by each record's fields) or a file's
  std::string text_field = "text";  // summarize: the text to summarize
  std::string reference_field;      // empty: the template's own (output, summary, the last reply)
  // max_new_tokens and sampling are used (greedy or not); sampling.seed seeds record i's stream
  // with sample_seed(seed, i), so a record's answer does not depend on the others. Stop strings,
  // sample count and beams are set here.
  GenerateSettings settings;
  std::string path;      // the records' file, for errors
  std::string out_path;  // non-empty: the outputs written there as JSONL (atomically)
  std::function<void(size_t done, size_t total)> progress;  // after each record (may be empty)
};

struct GeneratedOutput {
  TemplateKind kind = TemplateKind::Auto;  // the template the record used (never Auto)
  std::string hypothesis, reference;
  FinishReason finish = FinishReason::Length;
  size_t prompt_tokens = 0, output_tokens = 0;
};

struct GenerationEval {
  std::vector<GeneratedOutput> outputs;
  TextScores scores;
};

// Every record's prompt and reference are checked before the first token is generated. `gen`
// needs a tokenizer with <|endoftext|>. Throws gpt::Error "PATH:LINE: ..." on a bad record.
std::vector<GeneratedOutput> generate_outputs(Generator& gen, const std::vector<Record>& records,
                                              const GenerationEvalOptions& opt);

// One line per output: {"index", "template", "hypothesis", "reference", "finish"}.
std::string generated_outputs_jsonl(const std::vector<GeneratedOutput>& outputs);

// generate_outputs, the JSONL written to opt.out_path if set, and the scores of the outputs.
GenerationEval evaluate_generation(Generator& gen, const std::vector<Record>& records,
                                   const GenerationEvalOptions& opt);

}  // namespace gpt
