#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "io/hf_config.h"
#include "io/model_dir.h"
#include "io/safetensors.h"

namespace gpt {

namespace fs = std::filesystem;

namespace {

std::string checkpoint_name(int64_t step) { return fmt::format("checkpoint-{:08d}", step); }

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// OUT/NAME becomes a hard link to SRC, atomically (link to a temporary name, rename over).
void link_into_place(const std::string& src, const std::string& dst) {
  const std::string tmp = dst + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  if (::link(src.c_str(), tmp.c_str()) != 0) {
    // No hard links on this file system: copy instead (still atomic).
    write_file_atomic(dst, read_file(src));
    return;
  }
  if (::rename(tmp.c_str(), dst.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename {} to {}: {}", tmp, dst, std::strerror(e));
  }
}

// A whole decimal number without sign, as checkpoints write 64-bit values in strings.
std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  if (s.empty() || s.size() > 20) return std::nullopt;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// optimizer.safetensors' step count (metadata "step"), at most `step` when given.
int64_t optimizer_steps(const SafetensorsFile& f, const std::string& path, std::optional<int64_t> step) {
  auto it = f.metadata().find("step");
  if (it == f.metadata().end()) fail("{}: no \"step\" in the metadata", path);
  const std::optional<uint64_t> v = parse_u64(it->second);
  if (!v || *v > static_cast<uint64_t>(INT64_MAX))
    fail("{}: metadata \"step\" is \"{}\", not a step count", path, it->second.substr(0, 40));
  const auto s = static_cast<int64_t>(*v);
  // AdamW steps once per training step: a checkpoint of step N has taken at most N.
  if (step && s > *step) fail("{}: metadata \"step\" is {}, beyond the checkpoint's step {}", path, s, *step);
  return s;
}

// Reads the fields of one JSON object of trainer_state.json, naming the file and field in errors.
struct Fields {
  const nlohmann::json& obj;
  const std::string& path;
  std::string prefix;  // "loader." for the nested object

  const nlohmann::json* get(const char* key, bool required) const {
    auto it = obj.find(key);
    if (it == obj.end()) {
      if (required) fail("{}: corrupt training state: \"{}{}\" is missing", path, prefix, key);
      return nullptr;
    }
    return &*it;
  }
  [[noreturn]] void bad(const char* key, const char* want, const nlohmann::json& v) const {
    fail("{}: corrupt training state: \"{}{}\" must be {}, got {}", path, prefix, key, want, json_excerpt(v));
  }
  // A JSON integer (not 2.5, not "2") in [lo, hi].
  std::optional<int64_t> integer(const char* key, int64_t lo, bool required = false) const {
    const nlohmann::json* v = get(key, required);
    if (!v) return std::nullopt;
    const std::string want = fmt::format("a whole number >= {}", lo);
    if (v->is_number_unsigned()) {
      if (v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) bad(key, want.c_str(), *v);
    } else if (!v->is_number_integer() || v->get<int64_t>() < lo) {
      bad(key, want.c_str(), *v);
    }
    return v->get<int64_t>();
  }
  std::optional<uint64_t> count(const char* key, bool required = false) const {
    const nlohmann::json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_number_unsigned()) bad(key, "a whole number >= 0", *v);
    return v->get<uint64_t>();
  }
  std::optional<double> number(const char* key, double lo) const {
    const nlohmann::json* v = get(key, false);
    if (!v) return std::nullopt;
    if (!v->is_number() || !std::isfinite(v->get<double>()) || v->get<double>() < lo)
      bad(key, fmt::format("a finite number >= {}", lo).c_str(), *v);
    return v->get<double>();
  }
  void string(const char* key) const {
    const nlohmann::json* v = get(key, false);
    if (v && !v->is_string()) bad(key, "a string", *v);
  }
  // A 64-bit value written as a decimal string.
  static std::optional<uint64_t> u64_string(const nlohmann::json& v) {
    if (!v.is_string()) return std::nullopt;
    return parse_u64(v.get_ref<const std::string&>());
  }
};

}  // namespace

TrainerState parse_trainer_state(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object())
    fail("{}: corrupt training state: expected a JSON object, got {}", path, json_excerpt(j));
  const Fields f{j, path, ""};
  TrainerState s;
  s.step = *f.integer("step", 1, true);
  if (auto steps = f.integer("steps", 1); steps && *steps < s.step)
    fail("{}: corrupt training state: \"steps\" {} is below \"step\" {}", path, *steps, s.step);
  s.elapsed_s = f.number("elapsed_s", 0.0).value_or(0.0);
  s.tokens = f.count("tokens").value_or(0);
  s.ranks = f.integer("ranks", 1);
  s.batch_size = f.integer("batch_size", 1);
  s.grad_accum = f.integer("grad_accum", 1);
  f.integer("seq_len", 1);
  f.integer("warmup", 0);
  f.number("lr", 0.0);
  f.number("min_lr", 0.0);
  for (const char* key : {"schedule", "data", "gptcpp_version"}) f.string(key);
  if (const nlohmann::json* seed = f.get("seed", false); seed && !Fields::u64_string(*seed))
    f.bad("seed", "a 64-bit number in a string", *seed);

  const nlohmann::json* loader = f.get("loader", true);
  if (!loader->is_object()) f.bad("loader", "an object", *loader);
  const Fields l{*loader, path, "loader."};
  s.loader.shard = *l.count("shard", true);
  s.loader.position = *l.count("position", true);
  s.loader.batches = *l.count("batches", true);
  const nlohmann::json* rng = l.get("rng", true);
  const char* rng_want = "4 64-bit numbers in strings (the random generator's state)";
  if (!rng->is_array() || rng->size() != 4) l.bad("rng", rng_want, *rng);
  bool all_zero = true;
  for (size_t i = 0; i < 4; i++) {
    const std::optional<uint64_t> w = Fields::u64_string((*rng)[i]);
    if (!w) l.bad("rng", rng_want, (*rng)[i]);
    s.loader.rng[i] = *w;
    all_zero = all_zero && *w == 0;
  }
  // xoshiro256**'s one state it never reaches from any other, and never leaves: every draw would
  // be 0, and drawing a window would never end.
  if (all_zero) fail("{}: corrupt training state: \"loader.rng\" is all zero, which no run can save", path);
  return s;
}

void remove_stale_checkpoint_temps(const std::string& out) {
  std::error_code ec;
  if (!fs::is_directory(out, ec)) return;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(".checkpoint-") || name.find(".tmp.") != std::string::npos) fs::remove_all(e.path(), ec);
  }
}

void save_checkpoint(const std::string& out, int64_t step, const GPT& model, const Tokenizer* tok,
                     const AdamW& opt, const nlohmann::json& state) {
  if (opt.size() != opt.num_parameters())
    fail("save_checkpoint: the optimizer holds a shard of the moments; gather them first");
  if (opt.backend().host_memory()) {
    save_checkpoint(out, step, model, tok, OptimizerMoments{opt.m(), opt.v(), opt.size(), opt.steps()},
                    state);
    return;
  }
  std::vector<float> m(opt.size()), v(opt.size());
  opt.download_moments(m.data(), v.data());
  save_checkpoint(out, step, model, tok, OptimizerMoments{m.data(), v.data(), opt.size(), opt.steps()},
                  state);
}

void save_checkpoint(const std::string& out, int64_t step, const GPT& model, const Tokenizer* tok,
                     const OptimizerMoments& opt, const nlohmann::json& state,
                     const std::function<void()>& midway) {
  make_dirs(out);
  const std::string name = checkpoint_name(step);
  const std::string final_dir = out + "/" + name;
  const std::string tmp_dir = out + "/." + name + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  try {
    make_dirs(tmp_dir);
    save_model_dir(tmp_dir, model, tok);
    if (midway) midway();
    const std::vector<int64_t> shape{static_cast<int64_t>(opt.n)};
    write_safetensors(tmp_dir + "/optimizer.safetensors",
                      {{"exp_avg", DType::F32, shape, opt.m}, {"exp_avg_sq", DType::F32, shape, opt.v}},
                      {{"format", "gptcpp-adamw"}, {"step", std::to_string(opt.steps)}});
    write_file_atomic(tmp_dir + "/trainer_state.json", state.dump(2) + "\n");
    fsync_dir(tmp_dir);
    // A checkpoint of this step from an earlier, longer run is replaced.
    fs::remove_all(final_dir, ec);
    if (::rename(tmp_dir.c_str(), final_dir.c_str()) != 0)
      fail("cannot rename {} to {}: {}", tmp_dir, final_dir, std::strerror(errno));
  } catch (const Error& e) {
    fs::remove_all(tmp_dir, ec);
    fail("cannot save the checkpoint of step {} in {}: {}", step, out, e.what());
  }
  fsync_dir(out);
  // The switch: from here on, resuming starts from this checkpoint.
  write_file_atomic(out + "/latest", name + "\n");
  // OUT itself loads as the newest model.
  for (const auto& e : fs::directory_iterator(final_dir)) {
    const std::string f = e.path().filename().string();
    if (f == "optimizer.safetensors" || f == "trainer_state.json") continue;
    link_into_place(e.path().string(), out + "/" + f);
  }
  fsync_dir(out);
  // Older checkpoints go only once the new one is in place.
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string f = e.path().filename().string();
    if (f.starts_with("checkpoint-") && f != name && e.is_directory()) fs::remove_all(e.path(), ec);
  }
}

std::optional<TrainCheckpoint> find_checkpoint(const std::string& out) {
  if (!path_exists(out + "/latest")) return std::nullopt;
  std::string name = read_regular_file(out + "/latest");
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  if (!name.starts_with("checkpoint-") || name.find('/') != std::string::npos)
    fail("{}/latest: corrupt (does not name a checkpoint directory)", out);
  TrainCheckpoint c;
  c.dir = out + "/" + name;
  if (!fs::is_directory(c.dir)) fail("{}/latest names {}, which is not a directory", out, name);
  const std::string state_path = c.dir + "/trainer_state.json";
  c.state = parse_json(read_regular_file(state_path), state_path);
  c.trainer = parse_trainer_state(c.state, state_path);
  c.step = c.trainer.step;
  if (name != checkpoint_name(c.step))
    fail("{}: corrupt training state: \"step\" is {} but the directory is {}", state_path, c.step, name);
  return c;
}

void check_checkpoint_files(const TrainCheckpoint& c) {
  const std::string config_path = c.dir + "/config.json";
  if (!path_exists(config_path)) fail("{}: no config.json: the checkpoint is incomplete", c.dir);
  const HfConfig hc = parse_hf_config(read_regular_file(config_path), config_path);
  // Opening a safetensors file checks its header and that every tensor lies inside the file.
  const std::string model_path = c.dir + "/model.safetensors";
  if (!path_exists(model_path)) fail("{}: no model.safetensors: the checkpoint is incomplete", c.dir);
  SafetensorsFile::open(model_path);
  const std::string opt_path = c.dir + "/optimizer.safetensors";
  if (!path_exists(opt_path)) fail("{}: no optimizer.safetensors: the checkpoint is incomplete", c.dir);
  const SafetensorsFile f = SafetensorsFile::open(opt_path);
  const uint64_t n = hc.model.num_parameters();
  for (const char* name : {"exp_avg", "exp_avg_sq"}) {
    const TensorEntry* t = f.find(name);
    if (!t) fail("{}: not an optimizer state (tensor \"{}\" is missing)", opt_path, name);
    if (t->numel != n)
      fail("{}: tensor \"{}\" holds {} values but the model of {} has {} parameters", opt_path, name,
           t->numel, config_path, n);
  }
  optimizer_steps(f, opt_path, c.step);
}

void load_optimizer_state(const std::string& checkpoint_dir, AdamW& opt) {
  const std::string path = checkpoint_dir + "/optimizer.safetensors";
  SafetensorsFile f = SafetensorsFile::open(path);
  const TensorEntry* m = f.find("exp_avg");
  const TensorEntry* v = f.find("exp_avg_sq");
  if (!m || !v) fail("{}: not an optimizer state (exp_avg / exp_avg_sq missing)", path);
  const size_t n = opt.num_parameters();
  if (m->numel != n || v->numel != n)
    fail("{}: the optimizer state holds {} values but the model has {} parameters", path, m->numel, n);
  if (opt.size() == n && opt.backend().host_memory()) {
    f.read_f32(*m, std::span<float>(opt.m(), n));
    f.read_f32(*v, std::span<float>(opt.v(), n));
  } else {
    // A shard, or moments in device memory: read each whole array once, keep this rank's part in
    // host memory, and upload the two together.
    std::vector<float> all(n), mine_m(opt.size()), mine_v(opt.size());
    const dist::Range r = opt.shard();
    f.read_f32(*m, all);
    std::copy(all.begin() + r.begin, all.begin() + r.end, mine_m.begin());
    f.read_f32(*v, all);
    std::copy(all.begin() + r.begin, all.begin() + r.end, mine_v.begin());
    opt.upload_moments(mine_m.data(), mine_v.data());
  }
  opt.set_steps(optimizer_steps(f, path, std::nullopt));
}

}  // namespace gpt
