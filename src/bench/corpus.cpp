#include "bench/corpus.h"

#include <cmath>
#include <random>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace gpt {

namespace {

// Portable draws (std:: distributions differ between standard libraries).
struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  uint64_t below(uint64_t n) { return g() % n; }
  double unit() { return double(g() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return unit() < p; }
};

// Words of the GPT-2 vocabulary that are " " + ASCII letters, in id order (roughly frequency
// order, since early merges are the frequent ones).
std::vector<std::string> vocabulary_words() {
  auto tok = gpt2_tokenizer();
  std::vector<std::string> words;
  for (TokenId id = 256; id < tok->vocab_size(); ++id) {
    std::string_view t = tok->token_bytes(id);
    if (t.size() < 3 || t[0] != ' ') continue;
    bool letters = true;
    for (size_t i = 1; i < t.size(); ++i)
      letters &= (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z');
    if (letters) words.emplace_back(t.substr(1));
  }
  return words;
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed), words_(vocabulary_words()) {}

  // Zipf-like: index ~ exp(uniform * log(n)), so common words dominate and rare ones appear.
  const std::string& word() {
    double x = std::exp(rng_.unit() * std::log(double(words_.size())));
    return words_[std::min(words_.size() - 1, size_t(x) - 1)];
  }
  std::string rare_word() {  // glued pieces: words the vocabulary does not hold whole
    std::string w = word();
    w += word();
    if (rng_.chance(0.5)) w += word();
    return w;
  }

  void prose(std::string& out) {
    int sentences = 3 + int(rng_.below(6));
    for (int s = 0; s < sentences; ++s) {
      int n = 5 + int(rng_.below(18));
      for (int i = 0; i < n; ++i) {
        std::string w = rng_.chance(0.04) ? rare_word() : word();
        if (i == 0 && !w.empty() && w[0] >= 'a' && w[0] <= 'z') w[0] = char(w[0] - 32);
        if (rng_.chance(0.02))
          for (auto& c : w) c = char(std::toupper(static_cast<unsigned char>(c)));
        if (i > 0) out += ' ';
        out += w;
        if (rng_.chance(0.03)) out += kContractions[rng_.below(std::size(kContractions))];
        if (rng_.chance(0.06)) out += ',';
        if (rng_.chance(0.02)) out += " " + std::to_string(rng_.below(100000));
      }
      out += kEnds[rng_.below(std::size(kEnds))];
      out += rng_.chance(0.2) ? "\n" : " ";
    }
    out += rng_.chance(0.5) ? "\n\n" : "\n";
  }

  void code(std::string& out) {
    int lines = 4 + int(rng_.below(12));
    int depth = 0;
    for (int l = 0; l < lines; ++l) {
      std::string indent = rng_.chance(0.2) ? std::string(depth, '\t') : std::string(depth * 4, ' ');
      // Every draw is its own statement: the order of operands of + is unspecified in C++.
      std::string a = word();
      a += "_";
      a += word();
      std::string b = word(), c = word(), d = word();
      const uint64_t number = rng_.below(65536);
      const double fraction = rng_.unit();
      b[0] = char(std::toupper(static_cast<unsigned char>(b[0])));
      switch (rng_.below(5)) {
        case 0:
          out += indent + "if (" + a + " >= " + std::to_string(number % 4096) + ") {\n";
          ++depth;
          break;
        case 1:
          out += indent + "auto " + a + " = " + b + "::" + c + "(" + d + ", 0x" + std::to_string(number) +
                 ");\n";
          break;
        case 2:
          out += indent + "// " + b + " " + c + " " + d + "\n";
          break;
        case 3:
          out += indent + a + "[i + 1] += " + c + ".get(\"" + d + "\", " +
                 std::to_string(fraction).substr(0, 6) + ");  \n";
          break;
        default:
          if (depth > 0) {
            --depth;
            out += std::string(depth * 4, ' ') + "}\n";
          } else
            out += "\n";
      }
    }
    while (depth-- > 0) out += std::string(depth * 4, ' ') + "}\n";
  }

  void cjk(std::string& out) {
    struct Range {
      uint32_t lo, hi;
    };
    static constexpr Range kRanges[] = {
        {0xAC00, 0xD7A3}, {0x4E00, 0x62FF}, {0x3041, 0x3096}, {0x30A1, 0x30FA}};
    const Range r = kRanges[rng_.below(std::size(kRanges))];
    int n = 20 + int(rng_.below(80));
    for (int i = 0; i < n; ++i) {
      // Small per-section alphabets make words repeat, as real text does.
      append_utf8(out, r.lo + uint32_t(rng_.below(std::min<uint64_t>(r.hi - r.lo, 300))));
      if (rng_.chance(0.15))
        out += r.lo == 0xAC00 ? " " : (rng_.chance(0.5) ? "\xE3\x80\x81" : "\xE3\x80\x82");
    }
    out += "\n";
  }

  void emoji(std::string& out) {
    static const char* kEmoji[] = {"\xF0\x9F\x98\x80",
                                   "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
                                   "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
                                   "\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5",
                                   "\xE2\x9D\xA4\xEF\xB8\x8F",
                                   "\xF0\x9F\x8E\x89",
                                   "1\xEF\xB8\x8F\xE2\x83\xA3",
                                   "\xF0\x9F\xA7\x91\xE2\x80\x8D\xF0\x9F\x92\xBB"};
    int n = 3 + int(rng_.below(10));
    for (int i = 0; i < n; ++i) {
      out += word();
      out += rng_.chance(0.5) ? " " : "";
      out += kEmoji[rng_.below(std::size(kEmoji))];
      out += " ";
    }
    out += "\n";
  }

  void numbers(std::string& out) {
    int n = 3 + int(rng_.below(8));
    for (int i = 0; i < n; ++i) {
      size_t len = 1 + rng_.below(rng_.chance(0.1) ? 200 : 12);
      for (size_t k = 0; k < len; ++k) out += char('0' + rng_.below(10));
      out += rng_.chance(0.3) ? "." : (rng_.chance(0.5) ? ", " : " ");
    }
    out += "\n";
  }

  void whitespace(std::string& out) {
    int n = 3 + int(rng_.below(8));
    for (int i = 0; i < n; ++i) {
      out += std::string(rng_.below(12), ' ');
      out += word();
      out += std::string(rng_.below(4), ' ');
      out += rng_.chance(0.4) ? "\r\n" : (rng_.chance(0.3) ? "\t\t" : "\n");
    }
  }

  std::string make(size_t target) {
    std::string out;
    out.reserve(target + 4096);
    while (out.size() < target) {
      double x = rng_.unit();
      if (x < 0.55)
        prose(out);
      else if (x < 0.75)
        code(out);
      else if (x < 0.87)
        cjk(out);
      else if (x < 0.90)
        emoji(out);
      else if (x < 0.95)
        numbers(out);
      else
        whitespace(out);
    }
    return out;
  }

 private:
  static constexpr const char* kContractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL"};
  static constexpr const char* kEnds[] = {".", ".", ".", "?", "!", "...", ";", ":"};
  Rng rng_;
  std::vector<std::string> words_;
};

}  // namespace

std::string make_mixed_corpus(size_t target_bytes, uint64_t seed) {
  return Generator(seed).make(target_bytes);
}

}  // namespace gpt
