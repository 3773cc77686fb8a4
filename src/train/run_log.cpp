#include "train/run_log.h"

#include <unistd.h>

#include <sstream>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

namespace gpt {

using json = nlohmann::json;

RunLog::RunLog(RunLogOptions o, int64_t resume_step) : o_(std::move(o)) {
  if (!o_.quiet && Progress::is_terminal()) bar_ = std::make_unique<Progress>(o_.bar_label, o_.total_steps, "steps");
  const std::string path = o_.out_dir + "/metrics.jsonl";
  std::string kept;
  if (resume_step >= 0 && o_.write && !o_.out_dir.empty() && file_exists(path)) {
    std::istringstream in(read_regular_file(path));
    for (std::string line; std::getline(in, line);) {
      const std::optional<json> j = try_parse_json(line, nullptr);
      if (!j || !j->is_object() || !j->contains("step") || !(*j)["step"].is_number_integer() ||
          (*j)["step"].get<int64_t>() > resume_step)
        continue;
      kept += line + "\n";
      const double step = (*j)["step"].get<double>();
      if (j->contains("loss") && (*j)["loss"].is_number()) train_.push_back({step, (*j)["loss"].get<double>()});
      if (j->contains("val_loss") && (*j)["val_loss"].is_number())
        val_.push_back({step, (*j)["val_loss"].get<double>()});
    }
  }
  if (!o_.write || o_.out_dir.empty()) return;
  make_dirs(o_.out_dir);
  write_file_atomic(path, kept);
  metrics_ = std::fopen(path.c_str(), "a");
  if (!metrics_) fail("cannot open {} for writing", path);
}

RunLog::~RunLog() {
  if (metrics_) std::fclose(metrics_);
}

void RunLog::metrics(const json& line) {
  if (!metrics_) return;
  std::fprintf(metrics_, "%s\n", line.dump().c_str());
  std::fflush(metrics_);
}

void RunLog::step(int64_t step, int64_t first, const std::string& status, const std::string& line) {
  if (bar_) {
    bar_->update(static_cast<uint64_t>(step), status);
  } else if (!o_.quiet &&
             (step == first || step % 10 == 0 || step == static_cast<int64_t>(o_.total_steps))) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
}

void RunLog::print(const std::string& line) {
  if (o_.quiet) return;
  if (bar_) bar_->finish();
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void RunLog::write_plot() {
  if (!o_.write || o_.out_dir.empty()) return;
  write_loss_plot_svg(o_.out_dir + "/loss.svg", o_.plot_title, {{o_.train_series, train_}, {o_.val_series, val_}});
}

void RunLog::fsync() {
  if (!metrics_) return;
  std::fflush(metrics_);
  ::fsync(::fileno(metrics_));
}

void RunLog::finish() {
  if (bar_) bar_->finish();
  if (metrics_) std::fclose(metrics_);
  metrics_ = nullptr;
}

}  // namespace gpt
