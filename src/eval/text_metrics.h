// Every score of generated texts against references in one place (gpt eval --generate, and
// --rouge/--bleu on given files): ROUGE-1/2/L and exact match (eval/rouge.h), corpus BLEU
// (eval/bleu.h) and the diversity of the outputs (eval/diversity.h). See docs/task-eval.md.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/bleu.h"
#include "eval/diversity.h"
#include "eval/rouge.h"

namespace gpt {

struct TextScores {
  size_t pairs = 0;
  RougeScores rouge;  // with exact match
  BleuScore bleu;
  DiversityScores diversity;  // of the hypotheses
};

// The lists must have the same, non-zero length (gpt::Error otherwise).
TextScores score_texts(const std::vector<std::string>& hypotheses,
                       const std::vector<std::string>& references);

// The texts of a file: one per line (`field` empty; a final newline ends the last line, it does not
// start an empty one), or one JSON object per line and its string field `field` (blank lines
// skipped). A bad JSON line is an error naming the file and line, never skipped: the texts after it
// would pair with the wrong partners.
std::vector<std::string> read_texts(const std::string& path, const std::string& field = "");

// read_texts on both files, then score_texts; texts that do not pair up are an error naming both.
TextScores score_text_files(const std::string& hyp_path, const std::string& hyp_field,
                            const std::string& ref_path, const std::string& ref_field);

// {"pairs", "rouge1": {"p", "r", "f"}, "rouge2", "rougeL", "exact_match", "bleu": {"score",
// "precisions", "bp", "hyp_len", "ref_len"}, "distinct1", "distinct2", "repetition"}
nlohmann::ordered_json text_scores_json(const TextScores& s);

}  // namespace gpt
