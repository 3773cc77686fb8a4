// Corpus BLEU with sacreBLEU's defaults (the numbers `sacrebleu` prints for `corpus_bleu(hyps, [refs])`):
// one reference per hypothesis, mteval-v13a tokenization, case kept, n-grams up to 4, the NIST
// ("exp") smoothing and the brevity penalty. See docs/task-eval.md.
//
// Counts are summed over the corpus before any ratio is taken: for each order n the clipped
// matches m_n (each hypothesis n-gram counted at most as often as its reference holds it) over the
// hypothesis n-grams t_n. The precision of order n is m_n / t_n; an order with t_n > 0 but no match
// gets 1 / (2^k t_n) instead, k counting such orders so far (1, 2, ...); an order with t_n = 0 and
// every order after it stay 0. BLEU = 100 * BP * exp(mean over the four orders of log p_n), with
// log 0 taken as -9999999999 (so the score is 0), and 0 outright when no n-gram of any order matches.
// BP = 1 if c >= r, else exp(1 - r / c) (0 when c = 0), c and r the corpus token counts of the
// hypotheses and the references.
#pragma once
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gpt {

inline constexpr int kBleuMaxOrder = 4;

struct BleuScore {
  double score = 0;                                // 0..100
  std::array<double, kBleuMaxOrder> precisions{};  // percent, after smoothing
  std::array<size_t, kBleuMaxOrder> matches{}, totals{};
  double brevity_penalty = 0;
  size_t hyp_len = 0, ref_len = 0;  // tokens over the corpus
};

// mteval-v13a's tokenization as sacreBLEU applies it: "<skipped>" dropped, "-\n" joined, newlines
// as spaces, the entities &quot; &amp; &lt; &gt; decoded, then ASCII punctuation other than
// ' - . , split off, a period or comma split off unless it sits between two digits, a dash split off
// after a digit, and the text cut at whitespace (Python's str.split: ASCII and Unicode spaces).
std::vector<std::string> bleu_tokens(std::string_view text);

// The score from the corpus counts (the rule in the header comment). Exposed for tests.
BleuScore bleu_from_counts(const std::array<size_t, kBleuMaxOrder>& matches,
                           const std::array<size_t, kBleuMaxOrder>& totals, size_t hyp_len, size_t ref_len);

// The lists must have the same, non-zero length (gpt::Error otherwise).
BleuScore bleu_corpus(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references);

}  // namespace gpt
