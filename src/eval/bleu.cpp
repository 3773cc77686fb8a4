#include "eval/bleu.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "core/error.h"

namespace gpt {

namespace {

// Bytes of the whitespace character that starts at s[i] (0: none), for the characters Python's
// str.isspace() accepts: the ASCII ones, 0x1c..0x1f, and U+0085, U+00A0, U+1680, U+2000..U+200A,
// U+2028, U+2029, U+202F, U+205F, U+3000 in UTF-8.
size_t space_at(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  const unsigned c = b(0);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (c == 0xc2 && (b(1) == 0x85 || b(1) == 0xa0)) return 2;
  if (c == 0xe1 && b(1) == 0x9a && b(2) == 0x80) return 3;
  if (c == 0xe2 && b(1) == 0x80 &&
      ((b(2) >= 0x80 && b(2) <= 0x8a) || b(2) == 0xa8 || b(2) == 0xa9 || b(2) == 0xaf))
    return 3;
  if (c == 0xe2 && b(1) == 0x81 && b(2) == 0x9f) return 3;
  if (c == 0xe3 && b(1) == 0x80 && b(2) == 0x80) return 3;
  return 0;
}

// Splits at runs of whitespace (Python's str.split()).
std::vector<std::string> split_spaces(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size();) {
    if (const size_t k = space_at(s, i)) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      i += k;
    } else {
      cur += s[i++];
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// s without its trailing whitespace (Python's str.rstrip()).
std::string_view rstrip(std::string_view s) {
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    if (const size_t k = space_at(s, i)) {
      i += k;
    } else {
      end = ++i;
    }
  }
  return s.substr(0, end);
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos);
  return out;
}

bool digit(char c) { return c >= '0' && c <= '9'; }
bool period_or_comma(char c) { return c == '.' || c == ','; }

// The ASCII punctuation that is always split off: everything from '!' to '~' that is not a letter or
// a digit, except ' , - and . (the space itself is padded too, which changes nothing).
bool split_always(char ch) {
  const unsigned c = static_cast<unsigned char>(ch);
  return (c >= 0x20 && c <= 0x26) || (c >= 0x28 && c <= 0x2b) || c == 0x2f || (c >= 0x3a && c <= 0x40) ||
         (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

// Each rewrite scans left to right and resumes after what it rewrote, so matches never overlap.
std::string pad_punctuation(std::string_view s) {
  std::string a;
  for (char c : s) {
    if (split_always(c)) {
      a += ' ';
      a += c;
      a += ' ';
    } else {
      a += c;
    }
  }
  // A period or comma after a non-digit: "x." -> "x . ".
  std::string b;
  for (size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && !digit(a[i]) && period_or_comma(a[i + 1])) {
      b += a[i];
      b += ' ';
      b += a[i + 1];
      b += ' ';
      i += 2;
    } else {
      b += a[i++];
    }
  }
  // A period or comma before a non-digit: ".x" -> " . x".
  std::string c;
  for (size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && period_or_comma(b[i]) && !digit(b[i + 1])) {
      c += ' ';
      c += b[i];
      c += ' ';
      c += b[i + 1];
      i += 2;
    } else {
      c += b[i++];
    }
  }
  // A dash after a digit: "3-" -> "3 - ".
  std::string d;
  for (size_t i = 0; i < c.size();) {
    if (i + 1 < c.size() && digit(c[i]) && c[i + 1] == '-') {
      d += c[i];
      d += " - ";
      i += 2;
    } else {
      d += c[i++];
    }
  }
  return d;
}

using NgramCounts = std::array<std::unordered_map<std::string, size_t>, kBleuMaxOrder>;

// Tokens never hold a space, so an n-gram is its tokens joined by spaces.
NgramCounts ngrams(const std::vector<std::string>& t) {
  NgramCounts c;
  for (size_t i = 0; i < t.size(); i++) {
    std::string g;
    for (size_t n = 0; n < kBleuMaxOrder && i + n < t.size(); n++) {
      if (n) g += ' ';
      g += t[i + n];
      c[n][g]++;
    }
  }
  return c;
}

}  // namespace

std::vector<std::string> bleu_tokens(std::string_view text) {
  std::string s(rstrip(text));
  s = replace_all(std::move(s), "<skipped>", "");
  s = replace_all(std::move(s), "-\n", "");
  s = replace_all(std::move(s), "\n", " ");
  if (s.find('&') != std::string::npos) {
    s = replace_all(std::move(s), "&quot;", "\"");
    s = replace_all(std::move(s), "&amp;", "&");
    s = replace_all(std::move(s), "&lt;", "<");
    s = replace_all(std::move(s), "&gt;", ">");
  }
  return split_spaces(pad_punctuation(" " + s + " "));
}

BleuScore bleu_from_counts(const std::array<size_t, kBleuMaxOrder>& matches,
                           const std::array<size_t, kBleuMaxOrder>& totals, size_t hyp_len, size_t ref_len) {
  BleuScore s;
  s.matches = matches;
  s.totals = totals;
  s.hyp_len = hyp_len;
  s.ref_len = ref_len;
  s.brevity_penalty = 1.0;
  if (hyp_len < ref_len)
    s.brevity_penalty =
        hyp_len > 0 ? std::exp(1.0 - static_cast<double>(ref_len) / static_cast<double>(hyp_len)) : 0.0;
  if (std::all_of(matches.begin(), matches.end(), [](size_t m) { return m == 0; })) return s;
  double halving = 1;
  for (int n = 0; n < kBleuMaxOrder; n++) {
    if (totals[n] == 0) break;
    if (matches[n] == 0) {
      halving *= 2;
      s.precisions[n] = 100.0 / (halving * static_cast<double>(totals[n]));
    } else {
      s.precisions[n] = 100.0 * static_cast<double>(matches[n]) / static_cast<double>(totals[n]);
    }
  }
  double log_sum = 0;
  for (double p : s.precisions) log_sum += p == 0 ? -9999999999.0 : std::log(p);
  s.score = s.brevity_penalty * std::exp(log_sum / kBleuMaxOrder);
  return s;
}

BleuScore bleu_corpus(const std::vector<std::string>& hypotheses,
                      const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size())
    fail("bleu: {} hypotheses but {} references; they must pair up one to one", hypotheses.size(),
         references.size());
  if (hypotheses.empty()) fail("bleu: no texts to score");
  std::array<size_t, kBleuMaxOrder> matches{}, totals{};
  size_t hyp_len = 0, ref_len = 0;
  for (size_t i = 0; i < hypotheses.size(); i++) {
    const std::vector<std::string> h = bleu_tokens(hypotheses[i]), r = bleu_tokens(references[i]);
    hyp_len += h.size();
    ref_len += r.size();
    const NgramCounts hc = ngrams(h), rc = ngrams(r);
    for (int n = 0; n < kBleuMaxOrder; n++) {
      for (const auto& [g, k] : hc[n]) {
        totals[n] += k;
        const auto it = rc[n].find(g);
        if (it != rc[n].end()) matches[n] += std::min(k, it->second);
      }
    }
  }
  return bleu_from_counts(matches, totals, hyp_len, ref_len);
}

}  // namespace gpt
