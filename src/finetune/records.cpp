#include "finetune/records.h"

#include <cstdio>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

namespace gpt {

RecordFormat parse_record_format(std::string_view name) {
  if (name == "auto") return RecordFormat::Auto;
  if (name == "jsonl") return RecordFormat::Jsonl;
  if (name == "json") return RecordFormat::Json;
  if (name == "csv") return RecordFormat::Csv;
  if (name == "tsv") return RecordFormat::Tsv;
  fail("unknown data format \"{}\" (expected auto, jsonl, json, csv or tsv)", name);
}

const char* record_format_name(RecordFormat f) {
  switch (f) {
    case RecordFormat::Auto:
      return "auto";
    case RecordFormat::Jsonl:
      return "jsonl";
    case RecordFormat::Json:
      return "json";
    case RecordFormat::Csv:
      return "csv";
    case RecordFormat::Tsv:
      return "tsv";
  }
  return "?";
}

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i) {
    char c = s[s.size() - suffix.size() + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != suffix[i]) return false;
  }
  return true;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view strip_bom(std::string_view s) {
  if (s.size() >= 3 && s.substr(0, 3) == "\xEF\xBB\xBF") s.remove_prefix(3);
  return s;
}

// Collects bad lines and turns them into one error or one warning at the end.
struct BadLines {
  const std::string& path;
  ReadReport& rep;
  bool fatal = false;
  void add(size_t line, const std::string& what) {
    ++rep.bad_lines;
    if (rep.bad.size() < 10) rep.bad.push_back(fmt::format("{}:{}: {}", path, line, what));
  }
};

void parse_jsonl(std::string_view text, BadLines& bad, std::vector<Record>& out) {
  size_t line = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view s = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    if (s.empty()) continue;
    std::string why;
    std::optional<nlohmann::json> parsed = try_parse_json(s, &why);  // syntax, depth, a number out of range
    if (!parsed) {
      bad.add(line, "invalid JSON (" + why + ")");
      continue;
    }
    nlohmann::json& j = *parsed;
    if (!j.is_object()) {
      bad.add(line, fmt::format("expected a JSON object, got {}", j.type_name()));
      continue;
    }
    out.push_back({std::move(j), line});
  }
}

// A JSON array of objects. The array is split into its elements by a small scanner (strings,
// nesting) so that each element is parsed on its own: a bad element is reported with the line it
// starts on and can be skipped like a bad JSONL line.
void parse_json_array(std::string_view text, const std::string& path, BadLines& bad,
                      std::vector<Record>& out) {
  size_t pos = 0, line = 1;
  auto skip_ws = [&] {
    while (pos < text.size() && is_space(text[pos])) {
      if (text[pos] == '\n') ++line;
      ++pos;
    }
  };
  skip_ws();
  if (pos >= text.size() || text[pos] != '[')
    fail("{}:{}: expected a JSON array of records ('[' ... ']')", path, line);
  ++pos;
  for (;;) {
    skip_ws();
    if (pos >= text.size()) fail("{}:{}: the JSON array is never closed", path, line);
    if (text[pos] == ']' && out.empty() && bad.rep.bad_lines == 0) {
      ++pos;
      break;
    }
    size_t start = pos, start_line = line;
    int depth = 0;
    bool in_str = false;
    for (; pos < text.size(); ++pos) {
      char c = text[pos];
      if (c == '\n') ++line;
      if (in_str) {
        if (c == '\\') {
          ++pos;
        } else if (c == '"') {
          in_str = false;
        }
        continue;
      }
      if (c == '"') {
        in_str = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;
        --depth;
      } else if (c == ',' && depth == 0) {
        break;
      }
    }
    if (pos >= text.size()) fail("{}:{}: the JSON array is never closed", path, start_line);
    std::string_view elem = text.substr(start, pos - start);
    std::string why;
    if (std::optional<nlohmann::json> j = try_parse_json(elem, &why)) {
      if (j->is_object())
        out.push_back({std::move(*j), start_line});
      else
        bad.add(start_line, fmt::format("expected a JSON object, got {}", j->type_name()));
    } else {
      bad.add(start_line, "invalid JSON in the record starting here (" + why + ")");
    }
    char c = text[pos++];
    if (c == ']') break;
  }
  skip_ws();
  if (pos < text.size()) fail("{}:{}: unexpected text after the JSON array", path, line);
}

void parse_delimited(std::string_view text, char delim, const ReadOptions& opt, const std::string& path,
                     BadLines& bad, std::vector<Record>& out) {
  std::vector<CsvRow> rows = split_csv(text, delim);
  std::vector<std::string> names = opt.columns;
  size_t first = 0;
  if (names.empty()) {
    if (rows.empty()) fail("{}: no header row", path);
    if (!rows[0].error.empty()) fail("{}:{}: header row: {}", path, rows[0].line, rows[0].error);
    names = rows[0].fields;
    first = 1;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i].empty()) fail("{}:{}: header column {} has no name", path, rows[0].line, i + 1);
      for (size_t k = 0; k < i; ++k)
        if (names[k] == names[i]) fail("{}:{}: header names \"{}\" twice", path, rows[0].line, names[i]);
    }
  }
  for (size_t i = first; i < rows.size(); ++i) {
    const CsvRow& r = rows[i];
    if (!r.error.empty()) {
      bad.add(r.line, r.error);
      bad.fatal = bad.fatal || r.fatal;
      continue;
    }
    if (r.fields.size() != names.size()) {
      bad.add(r.line, fmt::format("{} field{}, expected {}", r.fields.size(), r.fields.size() == 1 ? "" : "s",
                                  names.size()));
      continue;
    }
    nlohmann::json j = nlohmann::json::object();
    for (size_t k = 0; k < names.size(); ++k) j[names[k]] = r.fields[k];
    out.push_back({std::move(j), r.line});
  }
}

}  // namespace

RecordFormat detect_record_format(const std::string& path, std::string_view content) {
  if (ends_with(path, ".jsonl")) return RecordFormat::Jsonl;
  if (ends_with(path, ".json")) return RecordFormat::Json;
  if (ends_with(path, ".csv")) return RecordFormat::Csv;
  if (ends_with(path, ".tsv")) return RecordFormat::Tsv;
  content = strip_bom(content);
  for (char c : content) {
    if (is_space(c)) continue;
    if (c == '[') return RecordFormat::Json;
    if (c == '{') return RecordFormat::Jsonl;
    break;
  }
  fail("{}: cannot tell the data format from the name; pass --format jsonl|json|csv|tsv", path);
}

std::vector<CsvRow> split_csv(std::string_view text, char delim) {
  std::vector<CsvRow> rows;
  size_t pos = 0, line = 1;
  const size_t n = text.size();
  while (pos < n) {
    CsvRow row;
    row.line = line;
    // An empty line (LF or CRLF) is no row.
    if (text[pos] == '\n' || (text[pos] == '\r' && pos + 1 < n && text[pos + 1] == '\n')) {
      pos += text[pos] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    for (;;) {  // one field per pass
      std::string field;
      if (pos < n && text[pos] == '"') {
        ++pos;
        bool closed = false;
        while (pos < n) {
          char c = text[pos++];
          if (c == '"') {
            if (pos < n && text[pos] == '"') {
              field += '"';
              ++pos;
            } else {
              closed = true;
              break;
            }
          } else {
            if (c == '\n') ++line;
            field += c;
          }
        }
        if (!closed) {
          row.error = "a quoted field is never closed";
          row.fatal = true;
          row.fields.push_back(std::move(field));
          rows.push_back(std::move(row));
          return rows;
        }
        bool at_end = pos >= n || text[pos] == delim || text[pos] == '\n' ||
                      (text[pos] == '\r' && (pos + 1 >= n || text[pos + 1] == '\n'));
        if (!at_end) {
          row.error = fmt::format("unexpected character '{}' after a closing quote", text[pos]);
          while (pos < n && text[pos] != '\n') ++pos;  // resynchronise at the next line
        }
      } else {
        while (pos < n && text[pos] != delim && text[pos] != '\n') field += text[pos++];
        if (!field.empty() && field.back() == '\r' && (pos >= n || text[pos] == '\n')) field.pop_back();
      }
      row.fields.push_back(std::move(field));
      if (pos < n && text[pos] == delim && row.error.empty()) {
        ++pos;
        continue;
      }
      if (pos < n && text[pos] == '\r') ++pos;
      if (pos < n && text[pos] == '\n') {
        ++pos;
        ++line;
      }
      break;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<Record> parse_records(std::string_view content, const std::string& path, const ReadOptions& opt,
                                  ReadReport* report) {
  ReadReport local;
  ReadReport& rep = report ? *report : local;
  rep = ReadReport{};
  RecordFormat fmt_ = opt.format == RecordFormat::Auto ? detect_record_format(path, content) : opt.format;
  rep.format = fmt_;
  std::string_view text = strip_bom(content);
  bool blank = true;
  for (char c : text) blank = blank && is_space(c);
  if (blank) fail("{}: the file is empty", path);

  BadLines bad{path, rep};
  std::vector<Record> out;
  switch (fmt_) {
    case RecordFormat::Jsonl:
      parse_jsonl(text, bad, out);
      break;
    case RecordFormat::Json:
      parse_json_array(text, path, bad, out);
      break;
    case RecordFormat::Csv:
      parse_delimited(text, ',', opt, path, bad, out);
      break;
    case RecordFormat::Tsv:
      parse_delimited(text, '\t', opt, path, bad, out);
      break;
    case RecordFormat::Auto:
      break;
  }
  if (rep.bad_lines > 0) {
    // A quoted field that is never closed swallows the rest of the file: never skippable.
    if (bad.fatal && opt.skip_bad_lines)  // it swallowed the rest of the file: not skippable
      fail("{}", rep.bad.back());
    if (!opt.skip_bad_lines)
      fail("{} ({} malformed line{} in all; --skip-bad-lines skips them)", rep.bad.front(), rep.bad_lines,
           rep.bad_lines == 1 ? "" : "s");
    if (opt.warn)
      std::fprintf(stderr, "gpt: warning: %s: skipped %zu malformed line%s (first: %s)\n", path.c_str(),
                   rep.bad_lines, rep.bad_lines == 1 ? "" : "s", rep.bad.front().c_str());
  }
  if (out.empty()) fail("{}: no records", path);
  rep.records = out.size();
  return out;
}

std::vector<Record> read_records(const std::string& path, const ReadOptions& opt, ReadReport* report) {
  std::string content = read_file(path);
  return parse_records(content, path, opt, report);
}

std::optional<std::string> record_text(const Record& r, std::string_view field) {
  auto it = r.fields.find(field);
  if (it == r.fields.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string require_text(const Record& r, std::string_view field, const std::string& path) {
  auto t = record_text(r, field);
  if (!t) fail("{}:{}: no field \"{}\"", path, r.line, field);
  return *t;
}

}  // namespace gpt
