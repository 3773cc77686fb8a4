#include "eval/text_metrics.h"

#include <optional>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

namespace gpt {

TextScores score_texts(const std::vector<std::string>& hypotheses,
                       const std::vector<std::string>& references) {
  TextScores s;
  s.rouge = rouge_corpus(hypotheses, references);  // checks the lengths
  s.pairs = hypotheses.size();
  s.bleu = bleu_corpus(hypotheses, references);
  s.diversity = diversity(hypotheses);
  return s;
}

std::vector<std::string> read_texts(const std::string& path, const std::string& field) {
  const std::string data = read_file(path);
  std::vector<std::string> out;
  size_t line_no = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string line = data.substr(pos, end - pos);
    pos = end + 1;
    line_no++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (field.empty()) {
      out.push_back(std::move(line));
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::string why;
    if (const std::optional<nlohmann::json> j = try_parse_json(line, &why)) {
      if (!j->is_object() || !j->contains(field))
        why = fmt::format("missing field \"{}\"", field);
      else if (!(*j)[field].is_string())
        why = fmt::format("field \"{}\" is not a string", field);
      else
        out.push_back((*j)[field].get<std::string>());
    } else {
      why = "invalid JSON (" + why + ")";
    }
    if (!why.empty()) fail("{} line {}: {}", path, line_no, why);
  }
  return out;
}

TextScores score_text_files(const std::string& hyp_path, const std::string& hyp_field,
                            const std::string& ref_path, const std::string& ref_field) {
  const std::vector<std::string> hyp = read_texts(hyp_path, hyp_field), ref = read_texts(ref_path, ref_field);
  if (hyp.size() != ref.size())
    fail("--hyp {} has {} texts but --ref {} has {}; they must pair up line by line", hyp_path, hyp.size(),
         ref_path, ref.size());
  if (hyp.empty()) fail("--hyp {} and --ref {} hold no texts: nothing to score", hyp_path, ref_path);
  return score_texts(hyp, ref);
}

nlohmann::ordered_json text_scores_json(const TextScores& s) {
  auto prf = [](const RougePRF& p) {
    nlohmann::ordered_json j;
    j["p"] = p.precision;
    j["r"] = p.recall;
    j["f"] = p.f;
    return j;
  };
  nlohmann::ordered_json j;
  j["pairs"] = s.pairs;
  j["rouge1"] = prf(s.rouge.rouge1);
  j["rouge2"] = prf(s.rouge.rouge2);
  j["rougeL"] = prf(s.rouge.rougeL);
  j["exact_match"] = s.rouge.exact_match;
  nlohmann::ordered_json b;
  b["score"] = s.bleu.score;
  b["precisions"] = s.bleu.precisions;
  b["bp"] = s.bleu.brevity_penalty;
  b["hyp_len"] = s.bleu.hyp_len;
  b["ref_len"] = s.bleu.ref_len;
  j["bleu"] = b;
  j["distinct1"] = s.diversity.distinct1;
  j["distinct2"] = s.diversity.distinct2;
  j["repetition"] = s.diversity.repetition;
  return j;
}

}  // namespace gpt
