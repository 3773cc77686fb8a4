#include "eval/rouge.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace gpt {

namespace {

RougePRF prf(size_t overlap, size_t hyp_count, size_t ref_count) {
  RougePRF s;
  s.precision = hyp_count ? static_cast<double>(overlap) / static_cast<double>(hyp_count) : 0;
  s.recall = ref_count ? static_cast<double>(overlap) / static_cast<double>(ref_count) : 0;
  s.f = s.precision + s.recall > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0;
  return s;
}

std::map<std::vector<std::string>, size_t> ngram_counts(const std::vector<std::string>& t, size_t n) {
  std::map<std::vector<std::string>, size_t> c;
  for (size_t i = 0; i + n <= t.size(); i++) c[std::vector<std::string>(t.begin() + i, t.begin() + i + n)]++;
  return c;
}

RougePRF rouge_n(const std::vector<std::string>& hyp, const std::vector<std::string>& ref, size_t n) {
  const auto h = ngram_counts(hyp, n), r = ngram_counts(ref, n);
  size_t overlap = 0, nh = 0, nr = 0;
  for (const auto& [g, k] : h) {
    nh += k;
    const auto it = r.find(g);
    if (it != r.end()) overlap += std::min(k, it->second);
  }
  for (const auto& [g, k] : r) nr += k;
  return prf(overlap, nh, nr);
}

// Length of the longest common subsequence, one row of the table at a time.
size_t lcs(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); i++) {
    for (size_t j = 1; j <= b.size(); j++)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::vector<std::string> rouge_tokens(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text) {
    char c = ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch;
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      cur += c;
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string normalize_whitespace(std::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

RougeScores rouge_pair(std::string_view hypothesis, std::string_view reference) {
  const std::vector<std::string> h = rouge_tokens(hypothesis), r = rouge_tokens(reference);
  RougeScores s;
  s.rouge1 = rouge_n(h, r, 1);
  s.rouge2 = rouge_n(h, r, 2);
  s.rougeL = prf(lcs(h, r), h.size(), r.size());
  s.exact_match = normalize_whitespace(hypothesis) == normalize_whitespace(reference) ? 1.0 : 0.0;
  return s;
}

RougeScores rouge_corpus(const std::vector<std::string>& hypotheses,
                         const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size())
    fail("rouge: {} hypotheses but {} references; they must pair up one to one", hypotheses.size(),
         references.size());
  if (hypotheses.empty()) fail("rouge: no texts to score");
  RougeScores m;
  auto add = [](RougePRF& a, const RougePRF& b) {
    a.precision += b.precision;
    a.recall += b.recall;
    a.f += b.f;
  };
  for (size_t i = 0; i < hypotheses.size(); i++) {
    const RougeScores s = rouge_pair(hypotheses[i], references[i]);
    add(m.rouge1, s.rouge1);
    add(m.rouge2, s.rouge2);
    add(m.rougeL, s.rougeL);
    m.exact_match += s.exact_match;
  }
  const double n = static_cast<double>(hypotheses.size());
  for (RougePRF* p : {&m.rouge1, &m.rouge2, &m.rougeL}) {
    p->precision /= n;
    p->recall /= n;
    p->f /= n;
  }
  m.exact_match /= n;
  return m;
}

}  // namespace gpt
