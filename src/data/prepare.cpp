// gpt prepare's engine: text and JSONL files -> llm.c token shards + dataset.json.
//
// Two passes at most, both streamed in chunks of opt.chunk_bytes:
//   scan      only when needed: JSONL files (to count documents and find where val begins) and,
//             for a character vocabulary, every input (its alphabet);
//   tokenize  chunks cut at safe points, encoded (in parallel), appended to the split's shards.
// Shards are written into a hidden staging directory inside out_dir and moved into place at the
// end, dataset.json last, so a failure leaves nothing visible. docs/data-preparation.md.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <span>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "core/parallel.h"
#include "data/dataset.h"
#include "data/shards.h"
#include "tokenizer/char_tokenizer.h"
#include "tokenizer/unicode.h"

namespace gpt::data {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kNone = UINT64_MAX;
constexpr const char* kStagingPrefix = ".prepare.tmp.";

bool printable(uint8_t c) { return c > 0x20 && c < 0x7F; }
bool ascii_space(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool continuation(uint8_t c) { return (c & 0xC0) == 0x80; }
uint8_t byte_at(std::string_view s, size_t i) { return static_cast<uint8_t>(s[i]); }

// An input file, read by position.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail("cannot open {}: {}", path, std::strerror(errno));
    struct stat st;
    if (::fstat(fd_, &st) != 0) fail("cannot read {}: {}", path, std::strerror(errno));
    if (S_ISDIR(st.st_mode)) fail("cannot read {}: it is a directory", path);
    if (!S_ISREG(st.st_mode)) fail("cannot read {}: not a regular file", path);
    size_ = static_cast<uint64_t>(st.st_size);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() { ::close(fd_); }

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

  // Exactly n bytes at `offset`; a file that shrank since it was opened is an error.
  void read_at(uint64_t offset, char* dst, size_t n) const {
    while (n > 0) {
      ssize_t r = ::pread(fd_, dst, n, static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail("cannot read {}: {}", path_, std::strerror(errno));
      if (r == 0) fail("{} changed while it was being read (it is shorter now)", path_);
      dst += r, offset += static_cast<uint64_t>(r), n -= static_cast<size_t>(r);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Bytes [begin, end) of a file handed out in pieces of about `chunk` bytes, each ending at a
// safe cut (last_safe_cut). Text with no safe cut for max(4 chunks, 1 MiB) is cut at a character
// boundary instead: memory stays bounded, at the price of maybe a different token at that cut.
class TextPieces {
 public:
  TextPieces(const InputFile& f, uint64_t begin, uint64_t end, size_t chunk)
      : f_(f),
        pos_(begin),
        end_(end),
        base_(begin),
        chunk_(chunk),
        max_pending_(std::max(4 * chunk, size_t(1) << 20)) {}

  // The next piece and its file offset; false at the end. The view lives until the next call.
  bool next(std::string_view* piece, uint64_t* offset) {
    buf_.erase(0, consumed_);
    base_ += consumed_;
    consumed_ = 0;
    size_t want = chunk_;
    for (;;) {
      if (buf_.size() < want && pos_ < end_) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(want - buf_.size(), end_ - pos_));
        const size_t old = buf_.size();
        buf_.resize(old + n);
        f_.read_at(pos_, buf_.data() + old, n);
        pos_ += n;
      }
      if (buf_.empty()) return false;
      size_t cut = buf_.size();
      if (pos_ < end_) {
        cut = last_safe_cut(buf_);
        if (cut == 0 && buf_.size() < max_pending_) {
          want = std::min(2 * std::max(want, buf_.size()), max_pending_);
          continue;
        }
        if (cut == 0) cut = last_char_boundary();
      }
      *piece = std::string_view(buf_.data(), cut);
      *offset = base_;
      consumed_ = cut;
      return true;
    }
  }

 private:
  size_t last_char_boundary() const {
    for (size_t b = buf_.size() - 1; b > 0; --b)
      if (!continuation(byte_at(buf_, b))) return b;
    return buf_.size();
  }

  const InputFile& f_;
  uint64_t pos_, end_, base_;
  size_t chunk_, max_pending_, consumed_ = 0;
  std::string buf_;
};

// The lines of a JSONL file, in batches of about `chunk` bytes of complete lines. Blank lines
// (only spaces, tabs, \r) are skipped. A single line must fit in memory.
struct JsonLine {
  std::string_view text;
  uint64_t offset;  // in the file
  uint64_t number;  // 1-based, for error messages
};

class JsonlBatches {
 public:
  JsonlBatches(const InputFile& f, size_t chunk) : f_(f), chunk_(chunk) {}

  // The next batch and the bytes it covers; false at the end. Views live until the next call.
  bool next(std::vector<JsonLine>* lines, size_t* bytes) {
    buf_.erase(0, consumed_);
    base_ += consumed_;
    consumed_ = 0;
    lines->clear();
    size_t want = chunk_;
    size_t end = 0;
    for (;;) {
      if (buf_.size() < want && pos_ < f_.size()) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(want - buf_.size(), f_.size() - pos_));
        const size_t old = buf_.size();
        buf_.resize(old + n);
        f_.read_at(pos_, buf_.data() + old, n);
        pos_ += n;
      }
      if (buf_.empty()) return false;
      if (pos_ == f_.size()) {
        end = buf_.size();
        break;
      }
      const size_t nl = buf_.rfind('\n');
      if (nl != std::string::npos) {
        end = nl + 1;
        break;
      }
      want = 2 * std::max(want, buf_.size());  // a line longer than the chunk
    }
    for (size_t p = 0; p < end;) {
      size_t e = buf_.find('\n', p);
      if (e == std::string::npos || e >= end) e = end;
      std::string_view line(buf_.data() + p, e - p);
      ++line_no_;
      if (line.find_first_not_of(" \t\r") != std::string_view::npos)
        lines->push_back({line, base_ + p, line_no_});
      p = e + 1;
    }
    consumed_ = end;
    *bytes = end;
    return true;
  }

 private:
  const InputFile& f_;
  size_t chunk_;
  uint64_t pos_ = 0, base_ = 0, line_no_ = 0;
  size_t consumed_ = 0;
  std::string buf_;
};

// The document text of one JSONL line: its string field `field`.
std::string jsonl_text(const JsonLine& line, const std::string& field, const std::string& path) {
  const nlohmann::json j = parse_json(line.text, fmt::format("{}:{}", path, line.number));
  if (!j.is_object())
    fail("{}:{}: expected a JSON object with a string field \"{}\"", path, line.number, field);
  auto it = j.find(field);
  if (it == j.end() || !it->is_string())
    fail("{}:{}: no string field \"{}\" (choose the field with --jsonl-field)", path, line.number, field);
  return it->get<std::string>();
}

// Characters seen in the text, for a character vocabulary.
class Alphabet {
 public:
  void add(std::string_view s, const std::string& where, uint64_t offset) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const auto* end = p + s.size();
    for (const uint8_t* q = p; q < end;) {
      if (*q < 0x80) {
        ascii_[*q++] = true;
        continue;
      }
      uint32_t cp;
      const int len = decode_utf8(q, end, &cp);
      if (cp == kInvalidCodePoint)
        fail("{}: not valid UTF-8 at byte {} (a character vocabulary needs UTF-8 text)", where,
             offset + static_cast<uint64_t>(q - p));
      other_.insert(cp);
      q += len;
    }
  }
  std::vector<std::string> chars() const {
    std::vector<std::string> out;
    for (uint32_t c = 0; c < 128; ++c)
      if (ascii_[c]) out.emplace_back(1, static_cast<char>(c));
    for (uint32_t cp : other_) {
      std::string c;
      append_utf8(c, cp);
      out.push_back(c);
    }
    return out;
  }

 private:
  std::array<bool, 128> ascii_{};
  std::set<uint32_t> other_;
};

// The shards of one split, filled in order: a shard is committed when it holds shard_tokens.
class SplitShards {
 public:
  SplitShards(std::string dir, std::string split, uint64_t shard_tokens)
      : dir_(std::move(dir)), split_(std::move(split)), shard_tokens_(shard_tokens) {}

  void append(std::span<const TokenId> ids) {
    while (!ids.empty()) {
      if (!writer_) {
        name_ = fmt::format("{}_{:06d}.bin", split_, names_.size());
        writer_.emplace(dir_ + "/" + name_);
      }
      const size_t n = static_cast<size_t>(std::min<uint64_t>(shard_tokens_ - writer_->size(), ids.size()));
      buf_.resize(n);
      for (size_t i = 0; i < n; ++i) buf_[i] = static_cast<uint16_t>(ids[i]);  // vocab <= 65536, checked
      writer_->append(buf_.data(), n);
      ids = ids.subspan(n);
      tokens_ += n;
      if (writer_->size() == shard_tokens_) close();
    }
  }
  void close() {
    if (!writer_) return;
    writer_->commit();
    writer_.reset();
    names_.push_back(name_);
  }
  uint64_t tokens() const { return tokens_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::string dir_, split_, name_;
  uint64_t shard_tokens_, tokens_ = 0;
  std::optional<ShardWriter> writer_;
  std::vector<std::string> names_;
  std::vector<uint16_t> buf_;
};

// The hidden directory the shards are written into; removed (with out_dir, if this run made it
// and it is empty) unless the dataset was committed.
struct Staging {
  std::string out, dir;
  bool made_out = false, committed = false;
  ~Staging() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
    if (!committed && made_out) fs::remove(out, ec);  // only removes an empty directory
  }
};

bool is_jsonl(const std::string& path) { return path.ends_with(".jsonl"); }

void validate(const PrepareOptions& o) {
  if (o.inputs.empty()) fail("no input files given");
  if (o.out_dir.empty()) fail("no output directory given");
  if (!std::isfinite(o.val_fraction) || o.val_fraction < 0 || o.val_fraction >= 1)
    fail("the validation fraction must be at least 0 and below 1 (got {})", o.val_fraction);
  if (o.shard_tokens < 1 || o.shard_tokens > static_cast<uint64_t>(INT32_MAX))
    fail("tokens per shard must be between 1 and {} (got {})", INT32_MAX, o.shard_tokens);
  if (o.chunk_bytes < 1) fail("the chunk size must be at least 1 byte");
  if (o.jsonl_field.empty()) fail("the JSONL field name is empty");
  if (o.threads < 0) fail("the thread count must be at least 1 (got {})", o.threads);
}

// Refuses to mix a new dataset with an old one unless asked to replace it. Removes the staging
// directories of runs that were killed (their process is gone).
void check_out_dir(const std::string& out, bool force) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) fail("cannot write to {}: it is not a directory", out);
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with(kStagingPrefix) || !e.is_directory()) continue;
    const long pid = std::strtol(name.c_str() + std::strlen(kStagingPrefix), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
  }
  const bool has = file_exists(out + "/" + kDatasetJson) || !find_shards(out, "train").empty() ||
                   !find_shards(out, "val").empty();
  if (has && !force)
    fail("{} already holds a dataset (dataset.json or shards); remove it or use --force to replace it", out);
}

}  // namespace

size_t val_cut(std::string_view text, size_t from, size_t window) {
  const size_t start = std::max<size_t>(from, 1), end = std::min(text.size(), from + window);
  for (size_t b = start; b < end; ++b)
    if (text[b] == '\n' && printable(byte_at(text, b - 1))) return b;
  for (size_t b = start; b < end; ++b)
    if (ascii_space(byte_at(text, b)) && printable(byte_at(text, b - 1))) return b;
  for (size_t b = from; b < text.size(); ++b)
    if (!continuation(byte_at(text, b))) return b;
  return text.size();
}

size_t last_safe_cut(std::string_view text) {
  for (size_t b = text.size(); b-- > 1;)
    if (ascii_space(byte_at(text, b)) && printable(byte_at(text, b - 1))) return b;
  return 0;
}

DatasetInfo prepare_dataset(const PrepareOptions& opt) {
  validate(opt);
  const int threads = opt.threads > 0 ? opt.threads : num_threads();
  const double f = opt.val_fraction;

  // Check every input first: a missing or empty file fails before any work. Files are opened
  // again one at a time when read (thousands of inputs must not exhaust file descriptors).
  std::vector<uint64_t> sizes, offsets;  // offsets: of each file in the inputs laid end to end
  uint64_t total = 0;
  for (const auto& path : opt.inputs) {
    sizes.push_back(InputFile(path).size());
    if (sizes.back() == 0) fail("{} is empty", path);
    offsets.push_back(total);
    total += sizes.back();
  }
  auto reopen = [&](size_t i) {
    auto file = std::make_unique<InputFile>(opt.inputs[i]);
    if (file->size() != sizes[i]) fail("{} changed while gpt prepare was reading it", opt.inputs[i]);
    return file;
  };

  // The tokenizer; a character vocabulary is built by the scan below.
  const bool build_chars = opt.tokenizer == "char";
  std::shared_ptr<const Tokenizer> tok;
  std::string kind = "char";
  if (!build_chars) {
    tok = tokenizer_from_spec(opt.tokenizer == "gpt2" ? "" : opt.tokenizer);
    kind = opt.tokenizer.empty() || opt.tokenizer == "gpt2" ? "gpt2" : tok->kind();
  }
  check_out_dir(opt.out_dir, opt.force);
  // The staging directory now, so an unwritable output fails before any work.
  Staging staging;
  staging.out = opt.out_dir;
  staging.made_out = !fs::exists(opt.out_dir);
  make_dirs(opt.out_dir);
  if (::access(opt.out_dir.c_str(), W_OK | X_OK) != 0)
    fail("cannot write to {}: {}", opt.out_dir, std::strerror(errno));
  staging.dir = fmt::format("{}/{}{}", opt.out_dir, kStagingPrefix, ::getpid());
  make_dirs(staging.dir);

  auto report = [&](const char* phase, uint64_t done, uint64_t all, uint64_t tokens) {
    if (opt.on_progress) opt.on_progress({phase, done, all, tokens});
  };

  // ---- scan: documents, and where val begins ---------------------------------------------------
  // Several documents: val is every document that starts at or after byte c = total - floor(f *
  // total) of the inputs laid end to end (the first document never; the last one if none does).
  const uint64_t val_bytes = static_cast<uint64_t>(std::floor(f * static_cast<double>(total)));
  const uint64_t c = std::max<uint64_t>(total - val_bytes, 1);
  uint64_t docs = 0, first_val_start = kNone, last_start = kNone;
  auto document_at = [&](uint64_t start) {
    ++docs;
    if (docs > 1 && start >= c && first_val_start == kNone) first_val_start = start;
    last_start = start;
  };
  Alphabet alphabet;
  const bool scan_all = build_chars;
  uint64_t scan_total = 0, scanned = 0;
  for (size_t i = 0; i < sizes.size(); ++i)
    if (scan_all || is_jsonl(opt.inputs[i])) scan_total += sizes[i];
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!is_jsonl(opt.inputs[i])) {
      document_at(offsets[i]);
      if (!scan_all) continue;
    }
    const auto file = reopen(i);
    const InputFile& in = *file;
    if (!is_jsonl(in.path())) {
      TextPieces pieces(in, 0, in.size(), opt.chunk_bytes);
      std::string_view piece;
      uint64_t at;
      while (pieces.next(&piece, &at)) {
        alphabet.add(piece, in.path(), at);
        report("scan", scanned += piece.size(), scan_total, 0);
      }
      continue;
    }
    JsonlBatches batches(in, opt.chunk_bytes);
    std::vector<JsonLine> lines;
    size_t bytes;
    while (batches.next(&lines, &bytes)) {
      for (const auto& line : lines) {
        document_at(offsets[i] + line.offset);
        if (scan_all)
          alphabet.add(jsonl_text(line, opt.jsonl_field, in.path()),
                       fmt::format("{}:{}", in.path(), line.number), 0);
      }
      report("scan", scanned += bytes, scan_total, 0);
    }
  }
  if (docs == 0) fail("no documents in the input (every JSONL line is blank)");
  const bool one_doc = docs == 1;
  const uint64_t val_start = one_doc || val_bytes == 0  ? kNone
                             : first_val_start != kNone ? first_val_start
                                                        : last_start;

  if (build_chars) {
    std::vector<std::string> chars = alphabet.chars();
    if (chars.empty()) fail("no text to build a character vocabulary from");
    tok = std::make_shared<CharTokenizer>(std::move(chars));
  }
  if (tok->vocab_size() > 65536)
    fail("the vocabulary has {} tokens, but llm.c token shards hold 16-bit ids (at most 65536 tokens)",
         tok->vocab_size());
  const std::optional<TokenId> eot = tok->eot_token();
  // <|endoftext|> follows each document when there are several; written in a text file, it is
  // the EOT token too (a corpus joined GPT-2 style keeps its separators). JSONL text is ordinary.
  const bool separate = !one_doc && eot.has_value();
  AllowedSpecial text_special;
  if (eot) text_special.names = {"<|endoftext|>"};
  const int encode_threads = tok->kind() == "bpe" ? threads : 1;

  // ---- tokenize ----------------------------------------------------------------------------------
  SplitShards train(staging.dir, "train", opt.shard_tokens), val(staging.dir, "val", opt.shard_tokens);
  uint64_t done = 0, documents = 0;
  auto progress = [&](uint64_t bytes) {
    report("tokenize", done += bytes, total, train.tokens() + val.tokens());
  };

  // Encodes bytes [begin, end) of a text file into `out`, piece by piece.
  auto encode_range = [&](const InputFile& in, uint64_t begin, uint64_t end, SplitShards& out) {
    TextPieces pieces(in, begin, end, opt.chunk_bytes);
    std::string_view piece;
    uint64_t at;
    while (pieces.next(&piece, &at)) {
      try {
        out.append(tok->encode(piece, text_special, encode_threads));
      } catch (const Error& e) {  // e.g. a character outside a given char:DIR vocabulary
        fail("{} (text from byte {}): {}", in.path(), at, e.what());
      }
      progress(piece.size());
    }
  };

  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto file = reopen(i);
    const InputFile& in = *file;
    if (!is_jsonl(in.path())) {
      ++documents;
      if (one_doc) {
        // One document: its last val_fraction of bytes is val, cut where no token changes.
        uint64_t cut = in.size();
        const uint64_t doc_val = static_cast<uint64_t>(std::floor(f * static_cast<double>(in.size())));
        if (doc_val > 0) {
          const uint64_t from = in.size() - doc_val;  // >= 1
          std::string window(static_cast<size_t>(std::min<uint64_t>(in.size() - (from - 1), (1 << 20) + 1)),
                             '\0');
          in.read_at(from - 1, window.data(), window.size());
          cut = from - 1 + val_cut(window, 1);
        }
        encode_range(in, 0, cut, train);
        encode_range(in, cut, in.size(), val);
      } else {
        SplitShards& out = offsets[i] >= val_start ? val : train;
        encode_range(in, 0, in.size(), out);
        if (separate) out.append(std::span(&*eot, 1));
      }
      continue;
    }
    // JSONL: documents parsed and encoded in parallel, a batch at a time, written in order.
    JsonlBatches batches(in, opt.chunk_bytes);
    std::vector<JsonLine> lines;
    size_t bytes;
    while (batches.next(&lines, &bytes)) {
      const size_t n = lines.size();
      std::vector<std::string> texts(n), errors(n);
      std::vector<std::vector<TokenId>> ids(n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
      for (size_t k = 0; k < n; ++k) {
        try {
          texts[k] = jsonl_text(lines[k], opt.jsonl_field, in.path());
          if (!one_doc) ids[k] = tok->encode(texts[k], AllowedSpecial::none(), 1);
        } catch (const Error& e) {
          errors[k] = e.what();
        } catch (const std::exception& e) {
          errors[k] = fmt::format("{}:{}: {}", in.path(), lines[k].number, e.what());
        }
      }
      for (size_t k = 0; k < n; ++k) {
        if (!errors[k].empty()) throw Error(errors[k]);
        if (texts[k].empty()) continue;  // an empty document adds nothing, not even EOT
        ++documents;
        if (one_doc) {
          const std::string& t = texts[k];
          const size_t doc_val = static_cast<size_t>(std::floor(f * static_cast<double>(t.size())));
          const size_t cut = doc_val > 0 ? val_cut(t, t.size() - doc_val) : t.size();
          train.append(
              tok->encode(std::string_view(t).substr(0, cut), AllowedSpecial::none(), encode_threads));
          val.append(tok->encode(std::string_view(t).substr(cut), AllowedSpecial::none(), encode_threads));
          continue;
        }
        SplitShards& out = offsets[i] + lines[k].offset >= val_start ? val : train;
        out.append(ids[k]);
        if (separate) out.append(std::span(&*eot, 1));
      }
      progress(bytes);
    }
  }
  train.close();
  val.close();
  if (train.tokens() + val.tokens() == 0) fail("the input has no text to tokenize");

  // ---- commit: shards into place, then the vocabulary, then dataset.json ---------------------------
  const std::string out = opt.out_dir;
  std::error_code ec;
  fs::remove(out + "/" + kDatasetJson, ec);  // an old dataset (--force) stops being valid first
  std::set<std::string> fresh;
  for (const auto* split : {&train, &val})
    for (const auto& name : split->names()) {
      fresh.insert(name);
      if (::rename((staging.dir + "/" + name).c_str(), (out + "/" + name).c_str()) != 0)
        fail("cannot move {} into {}: {}", name, out, std::strerror(errno));
    }
  for (const char* split : {"train", "val"})
    for (const auto& old : find_shards(out, split))
      if (!fresh.contains(fs::path(old).filename().string())) fs::remove(old, ec);
  if (kind != "gpt2") tok->save(out);

  DatasetInfo info;
  info.tokenizer_kind = kind;
  info.vocab_size = tok->vocab_size();
  info.eot = eot;
  info.documents = documents;
  info.train_tokens = train.tokens();
  info.val_tokens = val.tokens();
  info.train_shards = train.names().size();
  info.val_shards = val.names().size();
  info.val_fraction = f;
  info.bytes = total;
  info.inputs = opt.inputs;
  info.has_metadata = true;
  nlohmann::ordered_json j;
  j["format"] = "llmc-shards";
  j["tokenizer"] = info.tokenizer_kind;
  j["vocab_size"] = info.vocab_size;
  j["eot_id"] = eot ? nlohmann::ordered_json(*eot) : nlohmann::ordered_json(nullptr);
  j["documents"] = info.documents;
  j["train_tokens"] = info.train_tokens;
  j["val_tokens"] = info.val_tokens;
  j["train_shards"] = info.train_shards;
  j["val_shards"] = info.val_shards;
  j["val_fraction"] = f;
  j["shard_tokens"] = opt.shard_tokens;
  j["bytes"] = total;
  j["inputs"] = opt.inputs;
  write_file_atomic(out + "/" + kDatasetJson, j.dump(2) + "\n");
  staging.committed = true;
  return info;
}

}  // namespace gpt::data
