// gpt embed: text embeddings, the model's final hidden states pooled per input (generate/embed.h,
// docs/embeddings.md).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/io.h"
#include "core/json.h"
#include "core/parallel.h"
#include "generate/embed.h"
#include "io/model_dir.h"
#include "tokenizer/ids_text.h"

namespace gpt::cli {
namespace {

struct EmbedArgs {
  std::string model, input, field = "text", pooling = "mean", device = "cpu", weights;
  std::vector<std::string> texts;
  bool normalize = false, json = false;
  size_t batch_tokens = 4096;
  int threads = 0;
};

// One input as the file gave it: a text, or token ids.
struct Input {
  std::string text;
  std::vector<TokenId> ids;
  bool is_ids = false;
};

// --input: one text per line (blank lines skipped), or, for a .jsonl file, one JSON value per line:
// a string, an object with the text in `field`, or an array of token ids. "-" reads stdin.
std::vector<Input> read_inputs(const std::string& path, const std::string& field) {
  const std::string data = path == "-" ? read_stdin() : read_file(path);
  const bool jsonl = path.ends_with(".jsonl");
  std::vector<Input> out;
  size_t line = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string s = data.substr(pos, end - pos);
    pos = end + 1;
    line++;
    if (!s.empty() && s.back() == '\r') s.pop_back();
    if (s.find_first_not_of(" \t") == std::string::npos) continue;
    Input in;
    if (!jsonl) {
      in.text = std::move(s);
    } else {
      const nlohmann::json j = parse_json(s, fmt::format("{} line {}", path, line));
      if (j.is_string()) {
        in.text = j.get<std::string>();
      } else if (j.is_object() && j.contains(field) && j[field].is_string()) {
        in.text = j[field].get<std::string>();
      } else if (j.is_array()) {
        in.is_ids = true;
        for (const auto& t : j) {
          if (!t.is_number_unsigned() || t.get<uint64_t>() > 0x7fffffffu)
            fail("{} line {}: token ids must be integers in [0, 2^31), got {}", path, line, json_excerpt(t));
          in.ids.push_back(static_cast<TokenId>(t.get<uint64_t>()));
        }
      } else {
        fail("{} line {}: expected a string, an object with a string \"{}\", or an array of token ids", path,
             line, field);
      }
    }
    out.push_back(std::move(in));
  }
  return out;
}

// "first, second, third, ..., last" of a vector, for the summary.
std::string preview(const float* v, int n) {
  std::string s = "[";
  for (int i = 0; i < std::min(n, 3); i++) s += fmt::format("{}{:.4f}", i ? ", " : "", v[i]);
  if (n > 4) s += ", ...";
  if (n > 3) s += fmt::format(", {:.4f}", v[n - 1]);
  return s + "]";
}

void run_embed(const EmbedArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  if (a.texts.empty() == a.input.empty()) fail("give the inputs with --text (one or more) or --input FILE");
  EmbedOptions opt;
  const auto pooling = parse_pooling(a.pooling);
  if (!pooling) fail("--pooling must be mean or last, got \"{}\"", a.pooling);
  opt.pooling = *pooling;
  opt.normalize = a.normalize;
  opt.batch_tokens = a.batch_tokens;
  std::vector<Input> inputs;
  if (a.input.empty()) {
    for (const auto& t : a.texts) inputs.push_back({t, {}, false});
  } else {
    inputs = read_inputs(a.input, a.field);
    if (inputs.empty()) fail("{} holds no inputs", a.input);
  }
  LoadedModel lm = load_for_inference(a.model, a.device, a.weights);
  std::vector<std::vector<TokenId>> ids;
  for (const auto& in : inputs) {
    if (in.is_ids) {
      ids.push_back(in.ids);
      continue;
    }
    if (!lm.tokenizer) fail("{} has no vocabulary: give token ids (a .jsonl --input of id arrays)", a.model);
    ids.push_back(lm.tokenizer->encode(in.text, AllowedSpecial::everything(), num_threads()));
  }
  const std::vector<float> v = embed(lm.model, ids, opt);
  const int C = lm.model.config().n_embd;
  std::string out;
  if (!a.json)
    out += fmt::format("# {} input{}, {} dimensions, {} pooling{}\n", ids.size(), ids.size() == 1 ? "" : "s",
                       C, pooling_name(opt.pooling), opt.normalize ? ", normalized" : "");
  for (size_t i = 0; i < ids.size(); i++) {
    const float* e = v.data() + i * static_cast<size_t>(C);
    if (a.json) {
      nlohmann::ordered_json j;
      j["index"] = i;
      j["tokens"] = ids[i].size();
      j["embedding"] = std::vector<float>(e, e + C);
      out += j.dump() + "\n";
    } else {
      double ss = 0;
      for (int c = 0; c < C; c++) ss += static_cast<double>(e[c]) * e[c];
      out += fmt::format("{}  {} tokens  norm {:.4f}  {}\n", i, ids[i].size(), std::sqrt(ss), preview(e, C));
    }
  }
  write_stdout(out);
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto a = std::make_shared<EmbedArgs>();
  CLI::App* c = app.add_subcommand(
      "embed", "Text embeddings: the model's final hidden states (what the LM head reads), pooled per input");
  c->add_option("--model,-m", a->model, "Model directory (plain or quantized)")
      ->option_text("DIR")
      ->required();
  c->add_option("--text", a->texts, "A text to embed (repeat for more)")->option_text("TEXT");
  c->add_option("--input,-i", a->input,
                "Inputs, one text per line; a .jsonl file: per line a string, an object with --field, or an "
                "array of token ids; - = stdin")
      ->option_text("FILE");
  c->add_option("--field", a->field, "The text's field in .jsonl objects (default text)")
      ->option_text("NAME");
  c->add_option("--pooling", a->pooling,
                "mean: average over the input's tokens (default); last: the last token's state")
      ->option_text("mean|last");
  c->add_flag("--normalize", a->normalize, "Scale each vector to unit length (L2)");
  c->add_flag("--json", a->json, "One JSON line per input: {index, tokens, embedding}");
  c->add_option("--batch-tokens", a->batch_tokens, "Most padded tokens per forward pass (default 4096)")
      ->option_text("N")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24).description(""));
  c->add_option("--device", a->device, "Where the model runs: cpu (default), cuda, cuda-fp32, cpu-staged")
      ->option_text("DEV");
  c->add_option("--weights", a->weights, "Convert the weights on load: f32, bf16 or q8 (default: as stored)")
      ->option_text("TYPE");
  c->add_option("--threads", a->threads, "Threads (default: all cores)")->option_text("N");
  c->callback([a] { run_embed(*a); });
}

}  // namespace gpt::cli
