#include "eval/choices.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"

namespace gpt {

namespace {

using nlohmann::json;

// Characters as Python's len() counts them in valid UTF-8: the bytes that start one.
size_t utf8_chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string string_field(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) fail("missing field \"{}\"", key);
  if (!it->is_string()) fail("field \"{}\" is not a string", key);
  return it->get<std::string>();
}

std::vector<std::string> string_list(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) fail("missing field \"{}\"", key);
  if (!it->is_array()) fail("field \"{}\" is not a list", key);
  std::vector<std::string> out;
  for (const json& e : *it) {
    if (!e.is_string()) fail("field \"{}\" has an element that is not a string", key);
    out.push_back(e.get<std::string>());
  }
  return out;
}

// An integer label (HellaSwag's files have it as a number or a string of digits).
int index_label(const json& v, const char* key) {
  if (v.is_number_integer()) return v.get<int>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (!s.empty() && s.size() < 9 &&
        std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::stoi(s);
  }
  fail("field \"{}\" is not an index", key);
}

// One record in either format (see the header); throws gpt::Error with the reason only.
ChoiceExample parse_record(const json& j) {
  if (!j.is_object()) fail("not a JSON object");
  ChoiceExample ex;
  const char* label_key;
  if (j.contains("endings")) {  // HellaSwag
    if (j.contains("ctx")) {
      ex.context = string_field(j, "ctx");
    } else if (j.contains("ctx_a")) {
      ex.context = string_field(j, "ctx_a");
      const std::string b = j.contains("ctx_b") ? string_field(j, "ctx_b") : "";
      if (!b.empty()) ex.context += " " + b;
    } else {
      fail("missing field \"ctx\"");
    }
    for (const std::string& e : string_list(j, "endings")) {
      ex.choices.push_back(" " + e);
      ex.chars.push_back(utf8_chars(e));
    }
    label_key = "label";
    if (!j.contains(label_key)) fail("missing field \"label\"");
    ex.label = index_label(j[label_key], label_key);
  } else if (j.contains("choices") || j.contains("context")) {
    ex.context = string_field(j, "context");
    ex.choices = string_list(j, "choices");
    for (const std::string& c : ex.choices) ex.chars.push_back(utf8_chars(c));
    label_key = "answer";
    if (!j.contains(label_key)) fail("missing field \"answer\"");
    const json& a = j[label_key];
    const auto hit = a.is_string() ? std::find(ex.choices.begin(), ex.choices.end(), a.get<std::string>())
                                   : ex.choices.end();
    if (hit != ex.choices.end())
      ex.label = static_cast<int>(hit - ex.choices.begin());
    else if (a.is_string() && a.get<std::string>().find_first_not_of("0123456789") != std::string::npos)
      fail("\"answer\" \"{}\" is none of the choices", a.get<std::string>());
    else
      ex.label = index_label(a, label_key);
  } else {
    fail("neither HellaSwag fields (ctx, endings, label) nor simple ones (context, choices, answer)");
  }
  if (ex.choices.size() < 2) fail("{} choice(s); at least 2 are needed", ex.choices.size());
  if (ex.label < 0 || ex.label >= static_cast<int>(ex.choices.size()))
    fail("\"{}\" {} is out of range for {} choices", label_key, ex.label, ex.choices.size());
  if (ex.context.empty()) fail("the context is empty");
  for (size_t c = 0; c < ex.choices.size(); c++)
    if (ex.choices[c].empty()) fail("choice {} is empty", c);
  return ex;
}

int argmax(const std::vector<double>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

std::vector<ChoiceExample> parse_choice_jsonl(std::string_view text, const std::string& name, bool skip_bad,
                                              size_t* skipped,
                                              const std::function<void(const std::string&)>& warn) {
  std::vector<ChoiceExample> out;
  size_t line_no = 0, bad = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    line_no++;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    try {
      std::string why;
      std::optional<json> parsed = try_parse_json(line, &why);
      if (!parsed) fail("invalid JSON ({})", why);
      const json& j = *parsed;
      ChoiceExample ex = parse_record(j);
      ex.line = line_no;
      out.push_back(std::move(ex));
    } catch (const Error& e) {
      const std::string msg = fmt::format("{} line {}: {}", name, line_no, e.what());
      if (!skip_bad) fail("{} (use --skip-bad-lines to skip such lines)", msg);
      bad++;
      if (warn) warn(msg + "; skipped");
    }
  }
  if (skipped) *skipped = bad;
  if (out.empty())
    fail("{}: no examples{}", name, bad ? fmt::format(" ({} malformed line(s) skipped)", bad) : "");
  return out;
}

ChoiceScores score_choices(GPT& model, std::span<const TokenId> context,
                           const std::vector<std::vector<TokenId>>& choices) {
  if (context.empty()) fail("score_choices: the context has no tokens");
  if (choices.empty()) fail("score_choices: no choices");
  const size_t n_ctx = model.config().n_ctx;
  const int B = static_cast<int>(choices.size());
  ChoiceScores s;
  // Row b: context + choice b, the last n_ctx + 1 tokens of it; inputs are all but the last token,
  // targets the next token where it belongs to the choice.
  std::vector<std::vector<TokenId>> seq(B);
  std::vector<size_t> first_target(B);  // input position whose target is the choice's first token
  size_t T = 0;
  for (int b = 0; b < B; b++) {
    if (choices[b].empty()) fail("score_choices: choice {} has no tokens", b);
    std::vector<TokenId>& q = seq[b];
    q.assign(context.begin(), context.end());
    q.insert(q.end(), choices[b].begin(), choices[b].end());
    size_t cut = 0;
    if (q.size() > n_ctx + 1) {
      cut = q.size() - (n_ctx + 1);
      s.truncated = true;
    }
    q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(cut));
    // The choice's first token sits at index context.size() - cut of q (it may have been cut too).
    const size_t first = context.size() > cut ? context.size() - cut : 0;
    first_target[b] = first == 0 ? 0 : first - 1;
    T = std::max(T, q.size() - 1);
  }
  // Pad to a multiple of 16 (right padding never reaches earlier positions of a causal model) so
  // examples of similar length share one activation plan.
  T = std::min(n_ctx, (T + 15) / 16 * 16);
  std::vector<TokenId> x(static_cast<size_t>(B) * T, 0);
  std::vector<int32_t> y(static_cast<size_t>(B) * T, kIgnoreIndex);
  for (int b = 0; b < B; b++) {
    const std::vector<TokenId>& q = seq[b];
    for (size_t t = 0; t + 1 < q.size(); t++) {
      x[b * T + t] = q[t];
      if (t >= first_target[b]) y[b * T + t] = static_cast<int32_t>(q[t + 1]);
    }
  }
  model.forward(x.data(), y.data(), B, static_cast<int>(T));
  const float* losses = model.position_losses();
  for (int b = 0; b < B; b++) {
    double sum = 0;
    size_t n = 0;
    for (size_t t = 0; t < T; t++)
      if (y[b * T + t] != kIgnoreIndex) {
        sum -= losses[b * T + t];
        n++;
      }
    s.sum.push_back(sum);
    s.tokens.push_back(n);
    s.mean.push_back(n ? sum / static_cast<double>(n) : sum);
  }
  s.pred = argmax(s.sum);
  s.pred_norm = argmax(s.mean);
  return s;
}

std::string few_shot_prefix(const ChoiceEvalOptions& opt, const ChoiceExample& ex, size_t index) {
  if (opt.shots <= 0) return "";
  // Candidates: every pool example that is not this one (by content, so the evaluated file itself
  // can be the pool).
  std::vector<size_t> cand;
  for (size_t i = 0; i < opt.shots_pool.size(); i++) {
    const ChoiceExample& p = opt.shots_pool[i];
    if (p.context == ex.context && p.choices == ex.choices) continue;
    cand.push_back(i);
  }
  if (cand.size() < static_cast<size_t>(opt.shots))
    fail("--shots {}: the shots file has only {} example(s) other than example {}", opt.shots, cand.size(),
         index);
  // A partial Fisher-Yates shuffle seeded by (seed, index): the same shots on every run.
  uint64_t mix = opt.seed ^ (0x9E3779B97F4A7C15ull * (index + 1));
  Rng rng(splitmix64(mix));
  std::string prefix;
  for (int k = 0; k < opt.shots; k++) {
    const size_t j = k + rng.below(cand.size() - k);
    std::swap(cand[k], cand[j]);
    const ChoiceExample& p = opt.shots_pool[cand[k]];
    prefix += p.context + p.choices[p.label] + "\n\n";
  }
  return prefix;
}

ChoiceEvalResult evaluate_choices(GPT& model, const Tokenizer& tok, std::span<const ChoiceExample> examples,
                                  const ChoiceEvalOptions& opt,
                                  const std::function<void(size_t, size_t)>& progress) {
  ChoiceEvalResult r;
  for (size_t i = 0; i < examples.size(); i++) {
    const ChoiceExample& ex = examples[i];
    const std::vector<TokenId> ctx = tok.encode(few_shot_prefix(opt, ex, i) + ex.context);
    std::vector<std::vector<TokenId>> choices;
    for (const std::string& c : ex.choices) choices.push_back(tok.encode(c));
    ChoicePrediction p;
    p.index = i;
    p.label = ex.label;
    p.scores = score_choices(model, ctx, choices);
    for (size_t c = 0; c < choices.size(); c++) {
      const size_t n = ex.chars.size() == choices.size() ? ex.chars[c] : utf8_chars(ex.choices[c]);
      p.scores.per_char.push_back(p.scores.sum[c] / static_cast<double>(std::max<size_t>(n, 1)));
    }
    p.scores.pred_char = argmax(p.scores.per_char);
    r.correct += p.scores.pred == ex.label;
    r.correct_norm += p.scores.pred_norm == ex.label;
    r.correct_char += p.scores.pred_char == ex.label;
    r.truncated += p.scores.truncated;
    r.predictions.push_back(std::move(p));
    if (progress) progress(i + 1, examples.size());
  }
  r.examples = examples.size();
  if (r.examples) {
    r.accuracy = static_cast<double>(r.correct) / static_cast<double>(r.examples);
    r.accuracy_norm = static_cast<double>(r.correct_norm) / static_cast<double>(r.examples);
    r.accuracy_char = static_cast<double>(r.correct_char) / static_cast<double>(r.examples);
  }
  return r;
}

}  // namespace gpt
