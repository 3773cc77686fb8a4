// Fine-tuning data as records: one JSON object per example, read from JSONL, a JSON array file, CSV
// or TSV (RFC 4180 quoting, the header row names the fields). Every record remembers the line it
// started on, so later checks (a missing field, an unseen label) can point at it. A malformed line
// rejects the whole file by default, naming the first bad line and counting the others; with
// skip_bad_lines the bad lines are dropped, counted and reported in one warning line.
// See docs/instruction-tuning.md.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpt {

enum class RecordFormat { Auto, Jsonl, Json, Csv, Tsv };
RecordFormat parse_record_format(std::string_view name);  // "auto" | "jsonl" | "json" | "csv" | "tsv"
const char* record_format_name(RecordFormat f);
// By extension (.jsonl, .json, .csv, .tsv); otherwise by the first non-blank byte ('[' -> json,
// '{' -> jsonl); otherwise a gpt::Error asking for --format.
RecordFormat detect_record_format(const std::string& path, std::string_view content);

struct Record {
  nlohmann::json fields;  // an object: CSV/TSV fields are strings; JSON values are kept as they are
  size_t line = 0;        // 1-based line of the file where the record starts
};

struct ReadOptions {
  RecordFormat format = RecordFormat::Auto;
  bool skip_bad_lines = false;
  // CSV/TSV without a header row: the field names in column order (empty: the first row names them).
  std::vector<std::string> columns;
  // Print "gpt: warning: ..." to stderr when lines were skipped.
  bool warn = true;
};

struct ReadReport {
  RecordFormat format = RecordFormat::Auto;  // the format actually read
  size_t records = 0;
  size_t bad_lines = 0;
  std::vector<std::string> bad;  // "FILE:LINE: what", the first few
};

// Reads every record of `path`. Throws gpt::Error on an unreadable or empty file, a file with no
// records, or (without skip_bad_lines) any malformed line: "FILE:LINE: what is wrong (N malformed
// lines in all; --skip-bad-lines skips them)".
std::vector<Record> read_records(const std::string& path, const ReadOptions& opt = {},
                                 ReadReport* report = nullptr);
// The same from bytes already in memory; `path` names them in messages and picks the format.
std::vector<Record> parse_records(std::string_view content, const std::string& path,
                                  const ReadOptions& opt = {}, ReadReport* report = nullptr);

// A field as text: a string as it is, a number or bool as JSON writes it; nullopt if missing or null.
std::optional<std::string> record_text(const Record& r, std::string_view field);
// The same, throwing "WHERE:LINE: no field "NAME"" when it is missing.
std::string require_text(const Record& r, std::string_view field, const std::string& path);

// Splits one CSV/TSV document into rows of fields (RFC 4180: fields in double quotes may hold the
// delimiter, newlines and "" for a quote; CRLF or LF line ends). Exposed for tests.
struct CsvRow {
  std::vector<std::string> fields;
  size_t line = 0;     // where the row starts
  std::string error;   // non-empty: the row is malformed (its fields are partial)
  bool fatal = false;  // an unclosed quote: it swallowed the rest of the text
};
std::vector<CsvRow> split_csv(std::string_view text, char delim);

}  // namespace gpt
