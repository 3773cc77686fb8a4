#include "finetune/instruct.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace gpt {

std::vector<EncodedExample> encode_records(const std::vector<Record>& records, const Tokenizer& tok,
                                           const PromptTemplate& tmpl, int max_len, const std::string& path,
                                           bool skip_bad, EncodeReport* report) {
  if (max_len < 1) fail("--max-len must be at least 1 (got {})", max_len);
  require_eot(tok);
  EncodeReport rep;
  std::vector<EncodedExample> out;
  const size_t keep = static_cast<size_t>(max_len) + 1;
  for (const Record& r : records) {
    std::vector<Segment> segs;
    try {
      segs = render_record(r, tmpl, path);
    } catch (const Error&) {
      if (!skip_bad) throw;
      ++rep.skipped;
      continue;
    }
    EncodedExample ex = encode_segments(tok, segs);
    if (ex.ids.size() > keep) {
      ++rep.truncated;
      ex.ids.resize(keep);
      ex.trained.resize(keep);
      // Position 0 is never a target: a response must survive at 1..max_len.
      if (std::find(ex.trained.begin() + 1, ex.trained.end(), 1) == ex.trained.end()) {
        ++rep.dropped;
        continue;
      }
    }
    out.push_back(std::move(ex));
  }
  rep.examples = out.size();
  if (report) *report = rep;
  return out;
}

namespace {

// Writes one sequence as inputs [0, n-1) and their targets (the next token where it is trained).
void put_row(const std::vector<TokenId>& ids, const std::vector<uint8_t>& trained, TokenBatch& b, int row) {
  const size_t n = ids.size();
  for (size_t i = 0; i + 1 < n; ++i) {
    b.inputs[static_cast<size_t>(row) * b.T + i] = ids[i];
    b.targets[static_cast<size_t>(row) * b.T + i] =
        trained[i + 1] ? static_cast<int32_t>(ids[i + 1]) : kIgnoreIndex;
  }
}

TokenBatch rows_to_batch(const std::vector<std::pair<std::vector<TokenId>, std::vector<uint8_t>>>& rows,
                         TokenId pad) {
  TokenBatch b;
  b.B = static_cast<int>(rows.size());
  size_t longest = 2;
  for (const auto& r : rows) longest = std::max(longest, r.first.size());
  b.T = static_cast<int>(longest - 1);
  b.inputs.assign(static_cast<size_t>(b.B) * b.T, pad);
  b.targets.assign(static_cast<size_t>(b.B) * b.T, kIgnoreIndex);
  for (int i = 0; i < b.B; ++i) put_row(rows[i].first, rows[i].second, b, i);
  return b;
}

}  // namespace

TokenBatch pad_batch(std::span<const EncodedExample* const> examples, TokenId pad) {
  std::vector<std::pair<std::vector<TokenId>, std::vector<uint8_t>>> rows;
  for (const EncodedExample* e : examples) rows.emplace_back(e->ids, e->trained);
  return rows_to_batch(rows, pad);
}

TokenBatch pack_batch(std::span<const EncodedExample* const> examples, TokenId pad, int max_len) {
  std::vector<std::pair<std::vector<TokenId>, std::vector<uint8_t>>> rows;
  const size_t cap = static_cast<size_t>(max_len) + 1;
  for (const EncodedExample* e : examples) {
    if (rows.empty() || rows.back().first.size() + e->ids.size() > cap) rows.emplace_back();
    auto& r = rows.back();
    r.first.insert(r.first.end(), e->ids.begin(), e->ids.end());
    r.second.insert(r.second.end(), e->trained.begin(), e->trained.end());
  }
  return rows_to_batch(rows, pad);
}

InstructTask::InstructTask(std::vector<EncodedExample> train, std::vector<EncodedExample> val, TokenId eot,
                           int max_len, bool pack, int eval_batch)
    : train_(std::move(train)),
      val_(std::move(val)),
      eot_(eot),
      max_len_(max_len),
      pack_(pack),
      eval_batch_(std::max(1, eval_batch)) {}

size_t InstructTask::size(Split s) const {
  if (s == Split::Train) return train_.size();
  if (s == Split::Val) return val_.size();
  return 0;
}

TokenBatch InstructTask::make_batch(const std::vector<EncodedExample>& set, std::span<const size_t> idx,
                                    bool pack) const {
  std::vector<const EncodedExample*> ex;
  for (size_t i : idx) ex.push_back(&set[i]);
  return pack ? pack_batch(ex, eot_, max_len_) : pad_batch(ex, eot_);
}

double InstructTask::train_batch(GPT& model, std::span<const size_t> idx, float grad_scale, uint64_t seed) {
  TokenBatch b = make_batch(train_, idx, pack_);
  const float loss = model.forward(b.inputs.data(), b.targets.data(), b.B, b.T, true, seed);
  model.backward(grad_scale);
  return loss;
}

double response_loss(GPT& model, const std::vector<EncodedExample>& examples, TokenId pad, int batch) {
  double sum = 0.0;
  size_t count = 0;
  for (size_t s = 0; s < examples.size(); s += static_cast<size_t>(batch)) {
    std::vector<const EncodedExample*> ex;
    for (size_t i = s; i < std::min(examples.size(), s + batch); ++i) ex.push_back(&examples[i]);
    TokenBatch b = pad_batch(ex, pad);
    const float l = model.forward(b.inputs.data(), b.targets.data(), b.B, b.T, false);
    const size_t n = model.scored_targets();
    if (n > 0) sum += static_cast<double>(l) * n;
    count += n;
  }
  return count ? sum / count : 0.0;
}

nlohmann::json InstructTask::evaluate(GPT& model, Split s) {
  const auto& set = s == Split::Train ? train_ : val_;
  return {{"loss", response_loss(model, set, eot_, eval_batch_)}};
}

}  // namespace gpt
