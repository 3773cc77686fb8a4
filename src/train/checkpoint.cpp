#include "train/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/io.h"
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

// Fault injection for the tests: GPT_TEST_KILL_IN_SAVE=N sends SIGKILL to this process halfway
// through the save of step N (model written, checkpoint not yet in place).
void maybe_die_in_save(int64_t step) {
  const char* e = std::getenv("GPT_TEST_KILL_IN_SAVE");
  if (e && std::atoll(e) == step) ::kill(::getpid(), SIGKILL);
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

}  // namespace

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
                     const OptimizerMoments& opt, const nlohmann::json& state) {
  make_dirs(out);
  const std::string name = checkpoint_name(step);
  const std::string final_dir = out + "/" + name;
  const std::string tmp_dir = out + "/." + name + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  try {
    make_dirs(tmp_dir);
    save_model_dir(tmp_dir, model, tok);
    maybe_die_in_save(step);
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
  if (!file_exists(out + "/latest")) return std::nullopt;
  std::string name = read_file(out + "/latest");
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  if (!name.starts_with("checkpoint-") || name.find('/') != std::string::npos)
    fail("{}/latest: corrupt (does not name a checkpoint directory)", out);
  TrainCheckpoint c;
  c.dir = out + "/" + name;
  const std::string state_path = c.dir + "/trainer_state.json";
  try {
    c.state = nlohmann::json::parse(read_file(state_path));
    c.step = c.state.at("step").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt training state: {}", state_path, e.what());
  }
  return c;
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
  auto it = f.metadata().find("step");
  if (it == f.metadata().end()) fail("{}: no step in the metadata", path);
  opt.set_steps(std::atoll(it->second.c_str()));
}

}  // namespace gpt
