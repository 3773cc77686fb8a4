#include "finetune/generation_eval.h"

#include "core/error.h"
#include "core/io.h"

namespace gpt {

std::vector<GeneratedOutput> generate_outputs(Generator& gen, const std::vector<Record>& records,
                                              const GenerationEvalOptions& opt) {
  if (!gen.tokenizer()) fail("generation needs the model's tokenizer");
  const Tokenizer& tok = *gen.tokenizer();
  require_eot(tok);
  if (opt.settings.max_new_tokens < 1) fail("--max-new-tokens must be at least 1");
  if (records.empty()) fail("{}: no records to generate from", opt.path);
  std::vector<GenerationTask> tasks;
  tasks.reserve(records.size());
  for (const Record& r : records)
    tasks.push_back(record_generation_task(r, opt.tmpl, opt.path, opt.text_field, opt.reference_field));
  GenerateSettings gs = opt.settings;
  gs.num_samples = 1;
  gs.beams = 0;
  gs.stop_at_eot = true;
  gs.logprobs = false;
  gs.show_probs = 0;
  gs.want_probs = false;
  std::vector<GeneratedOutput> out;
  out.reserve(records.size());
  for (size_t i = 0; i < tasks.size(); i++) {
    gs.stop = tasks[i].stop;
    gs.sampling.seed = sample_seed(opt.settings.sampling.seed, static_cast<int>(i));
    gs.validate();
    const std::vector<TokenId> prompt = encode_segments(tok, tasks[i].prompt).ids;
    SampleResult s = gen.generate(prompt, gs).at(0);
    GeneratedOutput o;
    o.kind = tasks[i].kind;
    o.hypothesis = std::move(s.text);
    o.reference = std::move(tasks[i].reference);
    o.finish = s.finish;
    o.prompt_tokens = prompt.size();
    o.output_tokens = s.ids.size();
    out.push_back(std::move(o));
    if (opt.progress) opt.progress(i + 1, records.size());
  }
  return out;
}

std::string generated_outputs_jsonl(const std::vector<GeneratedOutput>& outputs) {
  std::string out;
  for (size_t i = 0; i < outputs.size(); i++) {
    nlohmann::ordered_json j;
    j["index"] = i;
    j["template"] = template_name(outputs[i].kind);
    j["hypothesis"] = outputs[i].hypothesis;
    j["reference"] = outputs[i].reference;
    j["finish"] = to_string(outputs[i].finish);
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  return out;
}

GenerationEval evaluate_generation(Generator& gen, const std::vector<Record>& records,
                                   const GenerationEvalOptions& opt) {
  GenerationEval r;
  r.outputs = generate_outputs(gen, records, opt);
  if (!opt.out_path.empty()) write_file_atomic(opt.out_path, generated_outputs_jsonl(r.outputs));
  std::vector<std::string> hyp, ref;
  hyp.reserve(r.outputs.size());
  ref.reserve(r.outputs.size());
  for (const GeneratedOutput& o : r.outputs) {
    hyp.push_back(o.hypothesis);
    ref.push_back(o.reference);
  }
  r.scores = score_texts(hyp, ref);
  return r;
}

}  // namespace gpt
