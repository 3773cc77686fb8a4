// libFuzzer: fine-tuning records. Any bytes, read as JSONL, a JSON array, CSV or TSV, with or
// without --skip-bad-lines, either give records or throw gpt::Error; every record is a JSON object
// whose line lies inside the text, lines never go backwards, and rendering a record with the auto
// template either works or throws gpt::Error.
#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "finetune/records.h"
#include "finetune/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the format and the mode; the rest is the file.
  const uint8_t mode = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const gpt::RecordFormat formats[] = {gpt::RecordFormat::Jsonl, gpt::RecordFormat::Json,
                                       gpt::RecordFormat::Csv, gpt::RecordFormat::Tsv};
  gpt::ReadOptions opt;
  opt.format = formats[mode % 4];
  opt.skip_bad_lines = (mode & 4) != 0;
  opt.warn = false;
  if (mode & 8) opt.columns = {"text", "summary"};
  const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  std::vector<gpt::Record> recs;
  gpt::ReadReport rep;
  try {
    recs = gpt::parse_records(text, "fuzz", opt, &rep);
  } catch (const gpt::Error&) {
    return 0;
  }
  if (recs.empty() || rep.records != recs.size()) std::abort();
  size_t prev = 0;
  for (const gpt::Record& r : recs) {
    if (!r.fields.is_object() || r.line < 1 || r.line > lines || r.line < prev) std::abort();
    prev = r.line;
    try {
      std::vector<gpt::Segment> segs = gpt::render_record(r, gpt::TemplateKind::Auto, "fuzz");
      if (segs.empty() || !segs.back().eot) std::abort();
    } catch (const gpt::Error&) {
    }
  }
  return 0;
}
