// Input that once crashed, hung or was misreported (issue 22, "Correct under pressure"), by class:
// deeply nested JSON in every reader, FIFOs where files are expected, damaged checkpoints, NaN
// weights, impossible thread counts and shapes that cannot fit in memory. Each must be one clear
// gpt::Error (or a warning), at once. The CLI side is tests/test_cli_bad_input.sh.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "core/memory.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/shards.h"
#include "eval/choices.h"
#include "finetune/records.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "io/peft.h"
#include "model/lora.h"
#include "serve/attention.h"
#include "test_util.h"
#include "tokenizer/char_tokenizer.h"
#include "tokenizer/vocab_io.h"
#include "train/checkpoint.h"

using namespace gpt;
namespace fs = std::filesystem;

namespace {

std::string nested(size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); }

// The message of the gpt::Error that f throws ("" if it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(stmt, part)                                                                      \
  do {                                                                                                \
    const std::string msg_ = error_of([&] { stmt; });                                                 \
    EXPECT_NE(msg_.find(part), std::string::npos) << "message: " << (msg_.empty() ? "(none)" : msg_); \
    EXPECT_EQ(msg_.find("json.exception"), std::string::npos) << msg_;                                \
    EXPECT_EQ(msg_.find('\n'), std::string::npos) << msg_;                                            \
  } while (0)

std::string fresh_dir(const std::string& name) {
  const std::string dir = test::temp_dir(name);
  fs::remove_all(dir);
  make_dirs(dir);
  return dir;
}

void make_fifo(const std::string& path) {
  fs::remove(path);
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0) << path;
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.n_ctx = 16;
  c.vocab_size = 32;
  return c;
}

GPT tiny_model() {
  GPT m(tiny_config());
  m.init_gpt2(5);
  return m;
}

}  // namespace

// ---- JSON: core/json.h ------------------------------------------------------------------------------

TEST(Json, DepthLimitIsExactAndIgnoresStrings) {
  EXPECT_NO_THROW(parse_json(nested(kMaxJsonDepth), "x"));
  EXPECT_ERROR(parse_json(nested(kMaxJsonDepth + 1), "x"),
               "x: not valid JSON (nested deeper than 256 levels, at line 1, column 257)");
  std::string objects;
  for (int i = 0; i <= kMaxJsonDepth; i++) objects += "{\"a\":";
  objects += "1" + std::string(kMaxJsonDepth + 1, '}');
  EXPECT_ERROR(parse_json(objects, "o.json"), "o.json: not valid JSON (nested deeper than 256 levels");
  // Brackets inside strings, escaped quotes included, are text.
  EXPECT_NO_THROW(parse_json("[\"" + std::string(5000, '[') + "\\\"" + std::string(5000, '{') + "\"]", "s"));
  EXPECT_EQ(json_depth_exceeded("\n\n  " + nested(300)), 2u + 2u + 256u);
  EXPECT_ERROR(parse_json("\n\n  " + nested(300), "l"), "at line 3, column 259");
  // A million levels: refused by the pre-scan, nothing is built or walked.
  EXPECT_ERROR(parse_json(nested(1000000), "deep"), "nested deeper than 256 levels");
  std::string why;
  EXPECT_FALSE(try_parse_json(nested(40), &why, nullptr, 32));
  EXPECT_EQ(why, "nested deeper than 32 levels, at line 1, column 33");
}

TEST(Json, MessagesAreOneShortLineWithoutLibraryTags) {
  for (const std::string& bad :
       {std::string("{"), std::string("1e999"), std::string("[1, 2"), std::string("\"\xFF\""),
        std::string("nul"), std::string("{\"a\": 6666666E66666666666666}"), "\"" + std::string(100000, 'x'),
        std::string("[1] 2"), std::string("")}) {
    const std::string msg = error_of([&] { parse_json(bad, "f.json"); });
    EXPECT_EQ(msg.rfind("f.json: not valid JSON (", 0), 0u) << msg;
    EXPECT_EQ(msg.find("json.exception"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 300u) << msg;
  }
  EXPECT_ERROR(parse_json("[1e999]", "n"), "n: not valid JSON (number overflow parsing '1e999')");
}

TEST(Json, ExcerptsAreShortAndNeverThrow) {
  EXPECT_EQ(json_excerpt(nlohmann::json::array({1, 2})), "an array of 2 values");
  EXPECT_EQ(json_excerpt(nlohmann::json::object()), "an object of 0 keys");
  EXPECT_EQ(json_excerpt(nlohmann::json(-3)), "-3");
  EXPECT_EQ(json_excerpt(nlohmann::json(std::string(100, 'x'))), "\"" + std::string(39, 'x') + "...");
  EXPECT_NO_THROW(json_excerpt(nlohmann::json(std::string("\xFF\xFE"))));  // dump() alone would throw
}

// Every reader of JSON goes through parse_json: deep nesting is one error naming the file (before,
// several of these crashed on the stack).
TEST(Json, EveryReaderRefusesDeepNesting) {
  const std::string deep = nested(300000);
  const char* part = "not valid JSON (nested deeper than 256 levels";
  EXPECT_ERROR(
      parse_tokenizer_json(R"({"model": {"type": "BPE", "vocab": {"a": )" + deep + R"(}, "merges": []}})",
                           "t/tokenizer.json"),
      "t/tokenizer.json: not valid JSON (nested deeper than 256 levels");
  EXPECT_ERROR(parse_records("{\"instruction\": " + deep + "}\n", "r.jsonl"),
               "r.jsonl:1: invalid JSON (nested deeper than 256 levels");
  ReadOptions json_array;
  json_array.format = RecordFormat::Json;
  EXPECT_ERROR(parse_records("[{\"a\": " + deep + "}]", "r.json", json_array),
               "r.json:1: invalid JSON in the record starting here (nested deeper than 256 levels");
  EXPECT_ERROR(parse_choice_jsonl("{\"context\": " + deep + "}\n", "c.jsonl"),
               "c.jsonl line 1: invalid JSON (nested deeper than 256 levels");
  GPT any = tiny_model();
  EXPECT_ERROR(attention_response(any, *gpt2_tokenizer(), std::string_view("{\"layer\": " + deep + "}")),
               "attention: the request body: not valid JSON (nested deeper");

  const std::string dir = fresh_dir("deepjson");
  write_file_atomic(dir + "/adapter_config.json", "{\"peft_type\": " + deep + "}");
  const GPT m = tiny_model();
  EXPECT_ERROR(load_lora(dir, m), "adapter_config.json: " + std::string(part));
  write_file_atomic(dir + "/dataset.json", "{\"format\": " + deep + "}");
  EXPECT_ERROR(data::read_dataset_info(dir), "dataset.json: " + std::string(part));
  write_file_atomic(dir + "/chars.json", "{\"chars\": " + deep + "}");
  EXPECT_ERROR(CharTokenizer::load(dir), "chars.json: " + std::string(part));
  make_dirs(dir + "/run/checkpoint-00000004");
  write_file_atomic(dir + "/run/latest", "checkpoint-00000004\n");
  write_file_atomic(dir + "/run/checkpoint-00000004/trainer_state.json",
                    "{\"step\": 4, \"loader\": " + deep + "}");
  EXPECT_ERROR(find_checkpoint(dir + "/run"), "trainer_state.json: " + std::string(part));
  fs::remove_all(dir);
}

// ---- FIFOs where a file is expected: an error at once, never a blocking open -------------------------

TEST(RegularFiles, AFifoIsAnErrorNotAHang) {
  const std::string dir = fresh_dir("fifo");
  make_fifo(dir + "/train_000000.bin");
  EXPECT_ERROR(data::TokenShard(dir + "/train_000000.bin"), "train_000000.bin: not a regular file (a FIFO)");
  EXPECT_ERROR(read_regular_file(dir + "/train_000000.bin"), "not a regular file (a FIFO)");
  EXPECT_ERROR(read_regular_file(dir), "not a regular file (a directory)");
  make_fifo(dir + "/dataset.json");
  EXPECT_ERROR(data::read_dataset_info(dir), "dataset.json: not a regular file (a FIFO)");

  // A model directory: the sharded index, a shard it lists, the single weights file.
  const std::string model = dir + "/model";
  save_model_dir(model, tiny_model(), nullptr);
  fs::rename(model + "/model.safetensors", model + "/part-1.safetensors");
  make_fifo(model + "/model.safetensors.index.json");
  EXPECT_ERROR(load_model_dir(model), "model.safetensors.index.json: not a regular file (a FIFO)");
  fs::remove(model + "/model.safetensors.index.json");
  write_file_atomic(model + "/model.safetensors.index.json",
                    R"({"weight_map": {"transformer.wte.weight": "part-2.safetensors"}})");
  make_fifo(model + "/part-2.safetensors");
  EXPECT_ERROR(load_model_dir(model), "part-2.safetensors: not a regular file (a FIFO)");
  fs::remove(model + "/model.safetensors.index.json");
  make_fifo(model + "/model.safetensors");
  EXPECT_ERROR(load_model_dir(model), "model.safetensors: not a regular file (a FIFO)");
  fs::remove_all(dir);
}

// ---- checkpoints: every field and file checked before --resume uses any -------------------------------

namespace {

nlohmann::json good_state() {
  return nlohmann::json::parse(R"({"step": 4, "steps": 6, "seed": "1337", "elapsed_s": 0.5, "tokens": 512,
    "batch_size": 4, "seq_len": 32, "grad_accum": 1, "ranks": 1, "lr": 0.0006, "min_lr": 0.00006,
    "warmup": 0, "schedule": "cosine", "data": "d", "gptcpp_version": "0.1.0",
    "loader": {"shard": 0, "position": 512, "batches": 4,
               "rng": ["13161956497586561035", "14663483216071361993", "3765287255879986010", "1"]}})");
}

// The error of good_state() with one field replaced (JSON pointer -> value, or removed).
std::string state_error(const std::string& pointer, const std::optional<nlohmann::json>& value) {
  nlohmann::json j = good_state();
  if (value)
    j[nlohmann::json::json_pointer(pointer)] = *value;
  else
    j.erase(j.find(pointer.substr(1)));
  return error_of([&] { parse_trainer_state(j, "c/trainer_state.json"); });
}

}  // namespace

TEST(Checkpoint, TrainerStateFieldsAreChecked) {
  const TrainerState s = parse_trainer_state(good_state(), "c/trainer_state.json");
  EXPECT_EQ(s.step, 4);
  EXPECT_EQ(s.loader.position, 512u);
  EXPECT_EQ(s.loader.rng[0], 13161956497586561035ull);
  const std::string p = "c/trainer_state.json: corrupt training state: ";
  EXPECT_EQ(state_error("/step", -3), p + "\"step\" must be a whole number >= 1, got -3");
  EXPECT_EQ(state_error("/step", 2.5), p + "\"step\" must be a whole number >= 1, got 2.5");
  EXPECT_EQ(state_error("/step", "4"), p + "\"step\" must be a whole number >= 1, got \"4\"");
  EXPECT_EQ(state_error("/step", std::nullopt), p + "\"step\" is missing");
  EXPECT_EQ(state_error("/steps", 3), p + "\"steps\" 3 is below \"step\" 4");
  EXPECT_EQ(state_error("/loader", std::nullopt), p + "\"loader\" is missing");
  EXPECT_EQ(state_error("/loader/position", -1),
            p + "\"loader.position\" must be a whole number >= 0, got -1");
  EXPECT_EQ(state_error("/loader/rng", nlohmann::json::array({"0", "0", "0", "0"})),
            p + "\"loader.rng\" is all zero, which no run can save");
  EXPECT_EQ(
      state_error("/loader/rng/2", "x"),
      p + "\"loader.rng\" must be 4 64-bit numbers in strings (the random generator's state), got \"x\"");
  EXPECT_EQ(state_error("/loader/rng/2", "18446744073709551616"),  // 2^64
            p + "\"loader.rng\" must be 4 64-bit numbers in strings (the random generator's state), got "
                "\"18446744073709551616\"");
  EXPECT_EQ(
      state_error("/loader/rng", nlohmann::json::array({"1", "2", "3"})),
      p + "\"loader.rng\" must be 4 64-bit numbers in strings (the random generator's state), got an array "
          "of 3 values");
  EXPECT_EQ(state_error("/elapsed_s", "abc"), p + "\"elapsed_s\" must be a finite number >= 0, got \"abc\"");
  EXPECT_EQ(state_error("/tokens", -5), p + "\"tokens\" must be a whole number >= 0, got -5");
  EXPECT_EQ(state_error("/ranks", 0), p + "\"ranks\" must be a whole number >= 1, got 0");
  EXPECT_EQ(state_error("/seed", "12ab"), p + "\"seed\" must be a 64-bit number in a string, got \"12ab\"");
  EXPECT_EQ(state_error("/schedule", 3), p + "\"schedule\" must be a string, got 3");
  EXPECT_ERROR(parse_trainer_state(nlohmann::json::array(), "t.json"),
               "t.json: corrupt training state: expected");
}

TEST(Rng, AnAllZeroStateIsRefused) {
  Rng r(1);
  EXPECT_ERROR(r.set_state({0, 0, 0, 0}), "all zeros");
  EXPECT_NO_THROW(r.set_state({0, 0, 0, 1}));
}

namespace {

// A real checkpoint of a tiny model at step 4 in OUT (as gpt train writes it).
std::string save_tiny_checkpoint(const std::string& out, const std::string& opt_step = "4") {
  const GPT m = tiny_model();
  std::vector<float> moments(m.num_parameters(), 0.01f);
  save_checkpoint(out, 4, m, nullptr, OptimizerMoments{moments.data(), moments.data(), moments.size(), 4},
                  good_state());
  const std::string dir = out + "/checkpoint-00000004";
  if (opt_step != "4") {
    const std::vector<int64_t> shape{static_cast<int64_t>(moments.size())};
    write_safetensors(
        dir + "/optimizer.safetensors",
        {{"exp_avg", DType::F32, shape, moments.data()}, {"exp_avg_sq", DType::F32, shape, moments.data()}},
        {{"format", "gptcpp-adamw"}, {"step", opt_step}});
  }
  return dir;
}

std::string checkpoint_error(const std::string& out) {
  return error_of([&] { check_checkpoint_files(*find_checkpoint(out)); });
}

}  // namespace

TEST(Checkpoint, EveryFileIsCheckedBeforeUse) {
  const std::string root = fresh_dir("ckpt");
  const std::string good = root + "/good";
  save_tiny_checkpoint(good);
  EXPECT_EQ(checkpoint_error(good), "");
  EXPECT_EQ(find_checkpoint(good)->step, 4);

  // A truncated model.safetensors (its hard link in OUT is the same file) names that file.
  std::string dir = save_tiny_checkpoint(root + "/trunc");
  fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") - 100);
  EXPECT_NE(checkpoint_error(root + "/trunc").find("checkpoint-00000004/model.safetensors: tensor"),
            std::string::npos)
      << checkpoint_error(root + "/trunc");
  EXPECT_NE(checkpoint_error(root + "/trunc").find("file truncated?"), std::string::npos);
  dir = save_tiny_checkpoint(root + "/trunc_opt");
  fs::resize_file(dir + "/optimizer.safetensors", 1000);
  EXPECT_NE(checkpoint_error(root + "/trunc_opt").find("optimizer.safetensors: tensor"), std::string::npos)
      << checkpoint_error(root + "/trunc_opt");
  EXPECT_NE(checkpoint_error(root + "/trunc_opt").find("file truncated?"), std::string::npos);

  save_tiny_checkpoint(root + "/optstep", "abc");
  EXPECT_EQ(checkpoint_error(root + "/optstep"), root +
                                                     "/optstep/checkpoint-00000004/optimizer.safetensors: "
                                                     "metadata \"step\" is \"abc\", not a step count");
  save_tiny_checkpoint(root + "/optneg", "-1");
  EXPECT_NE(checkpoint_error(root + "/optneg").find("not a step count"), std::string::npos);
  save_tiny_checkpoint(root + "/optbig", "9");
  EXPECT_NE(checkpoint_error(root + "/optbig").find("metadata \"step\" is 9, beyond the checkpoint's step 4"),
            std::string::npos);

  // An unreadable trainer_state.json (a directory in its place), a missing optimizer state, a step
  // that disagrees with its directory.
  dir = save_tiny_checkpoint(root + "/unread");
  fs::remove(dir + "/trainer_state.json");
  make_dirs(dir + "/trainer_state.json");
  EXPECT_ERROR(find_checkpoint(root + "/unread"), "trainer_state.json: not a regular file (a directory)");
  dir = save_tiny_checkpoint(root + "/noopt");
  fs::remove(dir + "/optimizer.safetensors");
  EXPECT_NE(checkpoint_error(root + "/noopt").find("no optimizer.safetensors"), std::string::npos);
  dir = save_tiny_checkpoint(root + "/renamed");
  nlohmann::json s = good_state();
  s["step"] = 3;
  write_file_atomic(dir + "/trainer_state.json", s.dump());
  EXPECT_ERROR(find_checkpoint(root + "/renamed"), "\"step\" is 3 but the directory is checkpoint-00000004");
  fs::remove_all(root);
}

// ---- NaN and Inf weights --------------------------------------------------------------------------

TEST(NonFiniteWeights, LoadingNamesTheTensor) {
  const std::string dir = fresh_dir("nanweights");
  GPT m = tiny_model();
  save_model_dir(dir + "/ok", m, nullptr);
  testing::internal::CaptureStderr();
  load_model_dir(dir + "/ok");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");

  m.param("h.1.mlp.c_fc.weight")[3 * 64 + 5] = std::numeric_limits<float>::quiet_NaN();
  m.param("h.1.mlp.c_fc.weight")[7 * 64] = std::numeric_limits<float>::quiet_NaN();
  m.param("ln_f.bias")[2] = std::numeric_limits<float>::infinity();
  save_model_dir(dir + "/nan", m, nullptr);
  const std::string what =
      "the weights are not finite: tensor \"h.1.mlp.c_fc.weight\" holds 2 NaN or infinite values (the first "
      "at "
      "[3, 5]), and 1 other tensor 1 more";
  testing::internal::CaptureStderr();
  load_model_dir(dir + "/nan");  // a warning, and the model
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "gpt: warning: " + dir + "/nan: " + what + ": what the model computes from them is NaN\n");
  EXPECT_ERROR(load_model_dir(dir + "/nan", WeightCheck::Fail), dir + "/nan: " + what);
  EXPECT_ERROR(load_for_inference(dir + "/nan"), what);                      // packed for inference
  EXPECT_ERROR(load_for_inference(dir + "/nan", "cpu", "q8"), what);         // and quantized on load

  // q8 directories (gpt quantize): their fp32 vectors are checked the same way.
  GPT v = tiny_model();
  v.param("h.0.ln_1.bias")[1] = -std::numeric_limits<float>::infinity();
  v.pack(ops::WeightType::Q8);
  save_model_dir(dir + "/q8", v, nullptr);
  EXPECT_ERROR(load_for_inference(dir + "/q8"),
               "tensor \"h.0.ln_1.bias\" holds 1 NaN or infinite value (the first at [1])");
  fs::remove_all(dir);
}

// ---- threads and memory -------------------------------------------------------------------------------

TEST(Threads, CountsThisMachineCannotRunAreRefused) {
  EXPECT_GE(max_threads(), 8);
  EXPECT_NE(thread_count_problem(max_threads() + 1).find("threads is more than"), std::string::npos);
  EXPECT_NE(thread_count_problem(0).find("not a thread count"), std::string::npos);
  const int before = num_threads();
  EXPECT_ERROR(set_num_threads(100000), "100000 threads is more than");
  EXPECT_EQ(num_threads(), before);
}

TEST(Memory, ShapesThatCannotFitSayHowMuchTheyNeed) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3'299'391'201'280ull), "3.30 TB");
  EXPECT_EQ(format_bytes(25'300'000'000ull), "25.3 GB");
  EXPECT_EQ(format_bytes(123'456'789ull), "123 MB");
  EXPECT_NO_THROW(require_memory(1, "one byte"));
  const std::string msg = error_of([] { require_memory(uint64_t{1} << 62, "the weights (x parameters)"); });
  EXPECT_EQ(msg.rfind("needs 4.61 EB of memory for the weights (x parameters), more than ", 0), 0u) << msg;
  // Past 2^40 parameters the config itself is refused, with the size.
  ModelConfig c = tiny_config();
  c.n_layer = 4096;
  c.n_embd = 16384;
  c.n_head = 16;
  EXPECT_ERROR(c.validate(),
               "model config: 13.2T parameters (52.8 TB of fp32 weights alone) is more than the 1.10T");
}
