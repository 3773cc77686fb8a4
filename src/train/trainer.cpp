#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io.h"
#include "core/memory.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "data/shards.h"
#include "dist/communicator.h"
#include "dist/nccl_communicator.h"
#include "dist/param_sync.h"
#include "io/model_dir.h"
#include "model/gpt.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/device_model.h"
#include "train/run_log.h"
#include "train/step.h"

namespace gpt {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

void check_hyperparameters(const TrainConfig& c) {
  if (c.steps < 1) fail("--steps must be at least 1 (got {})", c.steps);
  if (c.seq_len < 0) fail("--seq-len must be positive (got {})", c.seq_len);
  check_step_settings(c.batch_size, c.grad_accum, c.schedule, c.adam, c.grad_clip, c.dropout);
  if (c.eval_every < 0 || c.save_every < 0 || c.sample_every < 0)
    fail("--eval-every, --save-every and --sample-every must not be negative");
  if (c.eval_batches < 1) fail("--eval-batches must be at least 1 (got {})", c.eval_batches);
  if (c.sample_tokens < 1) fail("--sample-tokens must be at least 1 (got {})", c.sample_tokens);
  if (c.sample_every > 0 && !c.sampler) fail("internal error: --sample-every without a sampler (TrainConfig::sampler)");
}

json loader_json(const LoaderState& s) {
  json rng = json::array();
  for (uint64_t w : s.rng) rng.push_back(std::to_string(w));  // strings: JSON readers lose 64-bit ints
  return {{"shard", s.shard}, {"position", s.position}, {"batches", s.batches}, {"rng", rng}};
}

// Runs f on every rank. An error that every rank raised becomes a CollectiveError (rank 0 reports
// it); an error that only some raised ends the run through abort, naming the rank. One rank: f's
// own exception, unchanged.
void agree(dist::Communicator& comm, const std::function<void()>& f) {
  std::exception_ptr err;
  try {
    f();
  } catch (...) {
    err = std::current_exception();
  }
  if (comm.size() == 1) {
    if (err) std::rethrow_exception(err);
    return;
  }
  double failed = err ? 1.0 : 0.0;
  comm.allreduce_sum(&failed, 1);
  if (failed == 0.0) return;
  std::string what = "unknown error";
  try {
    if (err) std::rethrow_exception(err);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  if (failed == comm.size()) throw dist::CollectiveError(what);
  if (err) comm.abort(fmt::format("gpt: error: [rank {}] {}", comm.rank(), what));
  comm.barrier();  // the failed ranks never arrive: their abort ends this rank
  comm.abort("");
}

class Run {
 public:
  Run(const TrainConfig& c, dist::Communicator& comm)
      : cfg_(c), comm_(comm), R_(comm.size()), rank_(comm.rank()), root_(comm.rank() == 0) {
    if (!root_) cfg_.quiet = true;  // rank 0 alone prints, logs and writes
  }
  void go();

 private:
  void setup();
  void setup_sync();
  void prepare_output();
  struct GlobalLoss {
    double mean, scored;  // over every rank's rows
  };
  GlobalLoss global_loss(float loss, size_t scored);
  double validation_loss();
  std::string sample();
  void save(int64_t step, double elapsed, uint64_t tokens);
  std::string why_not_finite(int64_t step);
  void check_memory(const ModelConfig& mc) const;

  TrainConfig cfg_;
  dist::Communicator& comm_;
  const int R_, rank_;
  const bool root_;
  dist::Range shard_;              // the parameters whose AdamW state this rank holds (ZeRO-1)
  std::vector<size_t> counts_;     // every rank's shard size, for the collectives
  // Where the model, its gradients and the moments live, and how gradients and parameters reach
  // the other ranks (nccl_: the communicator of the NCCL path).
  Backend* be_ = nullptr;
  std::unique_ptr<dist::Communicator> nccl_;
  std::optional<dist::ParamSync> sync_;
  std::string warning_;            // printed once by rank 0
  std::shared_ptr<const Tokenizer> tok_;
  std::optional<GPT> model_;
  std::optional<AdamW> opt_;
  std::optional<DataLoader> train_, val_;
  int B_ = 0, T_ = 0;
  int64_t start_step_ = 0;
  double elapsed_before_ = 0.0;
  uint64_t tokens_before_ = 0;
  std::vector<TokenId> inputs_;
  std::vector<int32_t> targets_;
  std::optional<RunLog> log_;
  int64_t last_saved_ = -1;
};

void Run::setup() {
  check_hyperparameters(cfg_);
  // The device. Ranks sharing a machine take one GPU each (backend_for by local rank).
  be_ = cfg_.backend ? cfg_.backend : &backend_for(parse_device(cfg_.device), comm_.local_rank());
  const std::string& out = cfg_.out_dir;
  // The data. Its vocabulary is known when `gpt prepare` wrote it (dataset.json); plain llm.c
  // shards from elsewhere are taken as GPT-2 ids when the model's vocabulary can hold them.
  std::shared_ptr<const Tokenizer> data_tok;
  if (path_exists(cfg_.data_dir + "/dataset.json")) data_tok = data::dataset_tokenizer(cfg_.data_dir);
  const auto train_shards = data::find_shards(cfg_.data_dir, "train");
  if (train_shards.empty()) fail("{}: no train_*.bin token shards (make them with gpt prepare)", cfg_.data_dir);
  const auto val_shards = data::find_shards(cfg_.data_dir, "val");
  if (cfg_.eval_every > 0 && val_shards.empty())
    fail("--eval-every needs validation data but {} has no val_*.bin shards", cfg_.data_dir);

  // The model: the checkpoint when resuming, else --init, else a fresh initialisation.
  std::optional<TrainCheckpoint> ckpt = find_checkpoint(out);
  if (cfg_.resume && !ckpt) fail("--resume: {} holds no checkpoint to resume from", out);
  if (!cfg_.resume && ckpt)
    fail("{} already holds a training run (checkpoint at step {}): pass --resume to continue it, or choose another "
         "--out",
         out, ckpt->step);
  if (ckpt) {
    // The whole checkpoint is checked before any of it is used: a damaged file is named as such,
    // never mistaken for something else.
    check_checkpoint_files(*ckpt);
    if (ckpt->step >= cfg_.steps)
      fail("--resume: the checkpoint in {} is at step {} already; raise --steps (now {}) to train further",
           out, ckpt->step, cfg_.steps);
  }
  std::shared_ptr<const Tokenizer> model_tok;
  if (ckpt || !cfg_.init_dir.empty()) {
    const std::string dir = ckpt ? ckpt->dir : cfg_.init_dir;
    if (!ckpt && !file_exists(dir + "/config.json")) fail("--init {}: not a model directory (no config.json)", dir);
    LoadedModel lm = load_model_dir(dir, WeightCheck::Fail);  // NaN weights cannot train
    model_.emplace(on_backend(std::move(lm.model), *be_));
    model_tok = lm.tokenizer;
  } else {
    ModelConfig mc = cfg_.model.value_or(ModelConfig{});
    if (mc.vocab_size == 0) mc.vocab_size = data_tok ? static_cast<int>(data_tok->vocab_size()) : 50257;
    mc.validate();
    check_memory(mc);  // before the first allocation
    model_.emplace(mc, *be_);
    model_->init_gpt2(cfg_.seed);
  }
  const ModelConfig& mc = model_->config();
  if (ckpt || !cfg_.init_dir.empty()) check_memory(mc);  // the weights fit: the rest too?
  if (data_tok && data_tok->vocab_size() > static_cast<size_t>(mc.vocab_size))
    fail("the data's vocabulary ({} tokens, {}) does not fit the model's vocab_size {}", data_tok->vocab_size(),
         data_tok->kind(), mc.vocab_size);
  if (data_tok && model_tok &&
      (model_tok->kind() != data_tok->kind() || model_tok->vocab_size() != data_tok->vocab_size()))
    fail("the model's vocabulary ({} tokens, {}) does not match the data's ({} tokens, {})", model_tok->vocab_size(),
         model_tok->kind(), data_tok->vocab_size(), data_tok->kind());
  tok_ = data_tok ? data_tok : model_tok;
  if (!tok_ && mc.vocab_size >= 50257) tok_ = gpt2_tokenizer();
  if (!tok_ && cfg_.sample_every > 0)
    fail("--sample-every needs to know the data's vocabulary: {} has no dataset.json (make it with gpt prepare)",
         cfg_.data_dir);

  B_ = cfg_.batch_size;
  T_ = cfg_.seq_len > 0 ? cfg_.seq_len : mc.n_ctx;
  if (T_ > mc.n_ctx) fail("--seq-len {} is longer than the model's context of {} tokens", T_, mc.n_ctx);
  train_.emplace(train_shards, B_, T_, cfg_.shuffle, cfg_.seed, static_cast<size_t>(mc.vocab_size), "train",
                 rank_, R_);
  if (!val_shards.empty())
    val_.emplace(val_shards, B_, T_, false, cfg_.seed, static_cast<size_t>(mc.vocab_size), "validation",
                 rank_, R_);
  counts_ = dist::shard_counts(model_->num_parameters(), R_);
  shard_ = dist::shard_ranges(model_->num_parameters(), R_)[static_cast<size_t>(rank_)];
  opt_.emplace(*model_, cfg_.adam, shard_);
  model_->set_dropout(cfg_.dropout);
  cfg_.schedule.steps = cfg_.steps;

  if (ckpt) {
    load_optimizer_state(ckpt->dir, *opt_);
    const TrainerState& ts = ckpt->trainer;  // checked by find_checkpoint
    start_step_ = ts.step;
    try {
      train_->restore(ts.loader);
    } catch (const Error& e) {
      fail("{}/trainer_state.json: {}", ckpt->dir, e.what());
    }
    elapsed_before_ = ts.elapsed_s;
    tokens_before_ = ts.tokens;
    // Another rank count is allowed (the data cursor and the moments are global), but the global batch
    // then changes unless --batch-size or --grad-accum make up for it.
    const int64_t saved_ranks = ts.ranks.value_or(1);
    const int64_t saved_global =
        ts.batch_size.value_or(B_) * ts.grad_accum.value_or(cfg_.grad_accum) * saved_ranks;
    const int64_t global = static_cast<int64_t>(B_) * cfg_.grad_accum * R_;
    if (saved_ranks != R_ && saved_global != global)
      warning_ = fmt::format(
          "gpt: warning: resuming with {} rank{} where the checkpoint was written with {}: a step "
          "now takes {} sequences instead of {}",
          R_, R_ == 1 ? "" : "s", saved_ranks, global, saved_global);
    last_saved_ = start_step_;
  }
  inputs_.resize(static_cast<size_t>(B_) * T_);
  targets_.resize(inputs_.size());
}

// Everything is valid on every rank: only now is OUT touched, by rank 0. metrics.jsonl keeps one
// line per step across runs: what a killed run logged after its checkpoint goes.
void Run::prepare_output() {
  if (root_) {
    make_dirs(cfg_.out_dir);
    remove_stale_checkpoint_temps(cfg_.out_dir);
  }
  log_.emplace(RunLogOptions{.out_dir = cfg_.out_dir,
                             .plot_title = "gpt.cpp training loss",
                             .total_steps = static_cast<uint64_t>(cfg_.steps),
                             .quiet = cfg_.quiet,
                             .write = root_},
               start_step_ > 0 ? start_step_ : -1);
}

// The mean loss over the scored tokens of every rank's rows, from this rank's mean `loss` over its
// `scored` tokens. One rank: `loss` itself.
Run::GlobalLoss Run::global_loss(float loss, size_t scored) {
  if (R_ == 1) return {loss, static_cast<double>(scored)};
  double sum[2] = {static_cast<double>(loss) * static_cast<double>(scored), static_cast<double>(scored)};
  comm_.allreduce_sum(sum, 2);
  return {sum[0] / sum[1], sum[1]};
}

double Run::validation_loss() {
  // The first K batches of the validation shards, read sequentially from their start: every
  // evaluation sees the same tokens. The training plan (B, T) is reused with dropout off.
  val_->reset();
  model_->set_dropout(0.0f);
  double sum = 0.0;
  for (int k = 0; k < cfg_.eval_batches; k++) {
    val_->next(inputs_.data(), targets_.data());
    const float l = model_->forward(inputs_.data(), targets_.data(), B_, T_, true, 0);
    sum += global_loss(l, model_->scored_targets()).mean;
  }
  model_->set_dropout(cfg_.dropout);
  return sum / cfg_.eval_batches;
}

std::string Run::sample() {
  // A short sample to watch the model learn, through the sampler the caller gave (the generation
  // code: a KV-cache decoder over this very model), with dropout off.
  model_->set_dropout(0.0f);
  std::string text = cfg_.sampler(*model_, tok_, cfg_.sample_tokens, cfg_.seed ^ 0x5A4D504C45ull);
  model_->set_dropout(cfg_.dropout);
  return text;
}

void Run::save(int64_t step, double elapsed, uint64_t tokens) {
  json state = {{"step", step},
                {"loader", loader_json(train_->state())},
                {"seed", std::to_string(cfg_.seed)},
                {"elapsed_s", elapsed},
                {"tokens", tokens},
                {"batch_size", B_},
                {"seq_len", T_},
                {"grad_accum", cfg_.grad_accum},
                {"ranks", R_},
                {"steps", cfg_.steps},
                {"lr", cfg_.schedule.lr},
                {"min_lr", cfg_.schedule.min_lr},
                {"warmup", cfg_.schedule.warmup},
                {"schedule", schedule_name(cfg_.schedule.kind)},
                {"data", cfg_.data_dir},
                {"gptcpp_version", GPT_VERSION}};
  // The checkpoint holds the whole model's moments, whatever the rank count: rank 0 gathers the
  // shards (through the host communicator: checkpoints are rare), on the CPU the first into the
  // gradient arena (free until the next step's zero_grad). Moments in device memory come down first.
  const bool host = be_->host_memory();
  const float *m = opt_->m(), *v = opt_->v();
  FloatArena m_here, v_here, m_all, v_all;
  if (!host) {
    m_here.resize(opt_->size());
    v_here.resize(opt_->size());
    opt_->download_moments(m_here.data(), v_here.data());
    m = m_here.data();
    v = v_here.data();
  }
  OptimizerMoments moments{m, v, opt_->size(), opt_->steps()};
  if (R_ > 1) {
    const size_t n = model_->num_parameters();
    float* m_dst = host ? model_->grads() : nullptr;
    if (root_) {
      if (!host) m_all.resize(n);
      if (!host) m_dst = m_all.data();
      v_all.resize(n);
    }
    comm_.gather_to_root(m, m_dst, counts_, dist::DType::F32);
    comm_.gather_to_root(v, v_all.data(), counts_, dist::DType::F32);
    moments = {m_dst, v_all.data(), n, opt_->steps()};
  }
  last_saved_ = step;
  if (!root_) return;
  model_->download_parameters();  // the weights to write are the device's
  log_->fsync();
  save_checkpoint(cfg_.out_dir, step, *model_, tok_.get(), moments, state, [&] {
    if (cfg_.hooks.in_save) cfg_.hooks.in_save(step);
  });
}

// Fails with the sizes when training `mc` on this rank's batch cannot fit in memory, before the
// arenas are allocated: weights, gradients, AdamW's moments (this rank's shard) and the
// activations of a training step (GPT::plan's largest terms; a lower bound). On a device backend
// only the host's copy of the weights is host memory.
void Run::check_memory(const ModelConfig& mc) const {
  const uint64_t n = mc.num_parameters(), weights = 4 * n;
  if (!be_->host_memory()) {
    require_memory(weights, fmt::format("the weights ({} parameters, fp32)", format_count(n)));
    return;
  }
  const uint64_t B = static_cast<uint64_t>(cfg_.batch_size);
  const uint64_t T = static_cast<uint64_t>(cfg_.seq_len > 0 ? std::min(cfg_.seq_len, mc.n_ctx) : mc.n_ctx);
  const uint64_t N = B * T, C = static_cast<uint64_t>(mc.n_embd), V = static_cast<uint64_t>(mc.vocab_size);
  const uint64_t L = static_cast<uint64_t>(mc.n_layer), es = act_size(be_->act_type());
  const uint64_t att = be_->attention_saved_bytes(static_cast<int>(std::min<uint64_t>(B, INT32_MAX)),
                                                  static_cast<int>(T), mc.n_embd, mc.n_head);
  // Per layer 16 N C activations (ln_1, qkv, attention out, residual, ln_2, fc, gelu, residual) and
  // the saved attention; N V logits; 13 N C more (embeddings, ln_f, the backward buffers). In long
  // double: no overflow.
  const long double acts =
      static_cast<long double>(L) * (16.0L * N * C * es + att) + 1.0L * N * V * es + 13.0L * N * C * es;
  const uint64_t moments = 8 * (n / static_cast<uint64_t>(R_) + 1);
  const long double total = 2.0L * weights + moments + acts;
  const uint64_t bytes = total >= 1.8e19L ? UINT64_MAX : static_cast<uint64_t>(total);
  require_memory(
      bytes, fmt::format("training ({} parameters: weights {}, gradients {}, AdamW moments {}; "
                         "activations of a {} x {} batch at least {})",
                         format_count(n), format_bytes(weights), format_bytes(weights), format_bytes(moments),
                         B, T, format_bytes(acts >= 1.8e19L ? UINT64_MAX : static_cast<uint64_t>(acts))));
}

// The rest of the message when the loss is not finite at `step`: the tensor whose weights are not
// finite, if any, and where the last good checkpoint is (or the usual remedy).
std::string Run::why_not_finite(int64_t step) {
  model_->download_parameters();  // (a no-op on the CPU)
  FiniteCheck weights;
  weights.add_model(*model_);
  if (!weights.ok() && step == start_step_ + 1)
    return fmt::format("; the starting weights are not finite: {}", weights.describe());
  std::string s = weights.ok() ? "" : "; the weights are not finite: " + weights.describe();
  if (last_saved_ >= 0)
    return s + fmt::format("; the last good checkpoint (step {}) is in {}", last_saved_, cfg_.out_dir);
  return s + " (no checkpoint was saved yet; try a lower --lr)";
}

// How the gradients and parameters travel between ranks (dist/param_sync.h). Making NCCL's
// communicator is collective: a rank that fails there ends the run (train() aborts), since the
// others may be waiting inside NCCL.
void Run::setup_sync() {
  const dist::SyncPath path =
      dist::choose_sync_path(be_->kind(), be_->host_memory(), R_, dist::nccl_compiled_in());
  if (path == dist::SyncPath::Nccl) nccl_ = dist::make_nccl_communicator(comm_, *be_);
  sync_.emplace(path, comm_, nccl_.get(), *be_, counts_);
}

void Run::go() {
  agree(comm_, [&] { setup(); });
  // Every rank starts from rank 0's weights (the same by construction; this makes sure). They are
  // host memory until the first forward uploads them.
  comm_.broadcast(model_->params(), model_->num_parameters(), dist::DType::F32, 0);
  setup_sync();
  if (root_ && !warning_.empty()) std::fprintf(stderr, "%s\n", warning_.c_str());
  prepare_output();
  const ModelConfig& mc = model_->config();
  const int K = cfg_.grad_accum;
  const uint64_t tokens_per_step = static_cast<uint64_t>(B_) * T_ * K * R_;
  // The CPU's line is as it always was; another device and how its ranks talk are named.
  std::string where;
  if (be_->name() != "cpu") where = fmt::format(", device {}", be_->device_description());
  std::string how = nccl_ ? nccl_->describe() : comm_.describe();
  if (sync_->path() == dist::SyncPath::Staged) how += ", staged through host memory";
  log_->print(
      fmt::format("training {} ({:.2f}M parameters) on {} ({} train tokens in {} shards{}), {} steps of {} "
                  "tokens (batch {} x {} x {} accumulated{}), {} threads{}{}{}",
                  mc.describe(), model_->num_parameters() / 1e6, cfg_.data_dir, train_->tokens(),
                  train_->shards(), val_ ? fmt::format(", {} val tokens", val_->tokens()) : "", cfg_.steps,
                  tokens_per_step, B_, T_, K, R_ > 1 ? fmt::format(" x {} ranks", R_) : "", num_threads(),
                  R_ > 1 ? fmt::format(" per rank ({})", how) : "", where,
                  start_step_ > 0 ? fmt::format(", resuming at step {}", start_step_ + 1) : ""));
  TrainStep train_step(*model_, *opt_, {.grad_clip = cfg_.grad_clip,
                                        .seed = cfg_.seed,
                                        .grad_accum = K,
                                        .comm = &comm_,
                                        .sync = &*sync_});
  const auto run_start = Clock::now();
  double last_loss = 0.0;
  for (int64_t step = start_step_ + 1; step <= cfg_.steps; step++) {
    const auto t0 = Clock::now();
    const TrainHooks& hooks = cfg_.hooks;
    if (hooks.fail_at && hooks.fail_at(rank_, step)) fail("a test error on rank {} at step {}", rank_, step);
    if (hooks.poison_before && hooks.poison_before(step)) {
      model_->download_parameters();  // the host copy becomes the newer one: it must be current
      model_->params()[0] = std::numeric_limits<float>::quiet_NaN();
    }
    const double loss = train_step.accumulate(step, K, [&](int, uint64_t dseed) {
      train_->next(inputs_.data(), targets_.data());
      const float l = model_->forward(inputs_.data(), targets_.data(), B_, T_, true, dseed);
      const size_t scored = model_->scored_targets();
      const GlobalLoss gl = global_loss(l, scored);
      // Every rank sees the same global loss, so every rank stops here together.
      if (!std::isfinite(gl.mean))
        throw dist::CollectiveError(fmt::format("the loss became {} at step {}: training stopped{}", gl.mean,
                                                step, why_not_finite(step)));
      // The gradient of the global mean: this rank's share of the scored tokens (1/R when even). The
      // reduce-scatter then sums the ranks' gradients.
      const float share = R_ == 1 ? 1.0f : static_cast<float>(static_cast<double>(scored) / gl.scored);
      model_->backward(1.0f / K * share);
      return gl.mean;
    });
    const float lr = cfg_.schedule.at(static_cast<int>(step));
    const TrainStep::Update up = train_step.update(lr);
    const double norm = up.grad_norm;
    if (!up.applied)
      throw dist::CollectiveError(fmt::format(
          "the gradient norm became {} at step {}: training stopped{}", norm, step,
          last_saved_ >= 0
              ? fmt::format("; the last good checkpoint (step {}) is in {}", last_saved_, cfg_.out_dir)
              : ""));
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    const double elapsed = elapsed_before_ + std::chrono::duration<double>(Clock::now() - run_start).count();
    last_loss = loss;
    log_->metrics({{"step", step},
                   {"loss", loss},
                   {"lr", lr},
                   {"grad_norm", norm},
                   {"tokens_per_s", tokens_per_step / dt},
                   {"elapsed_s", elapsed}});
    log_->train_point(step, loss);
    if (hooks.after_step) hooks.after_step(step);
    log_->step(step, start_step_ + 1, fmt::format("loss {:.4f} · lr {:.2e} · {:.0f} tok/s", loss, lr, tokens_per_step / dt),
               fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.3e} | norm {:.3f} | {:.0f} tok/s | {:.1f} ms | {}",
                           step, cfg_.steps, loss, lr, norm, tokens_per_step / dt, dt * 1e3, format_duration(elapsed)));

    const bool last = step == cfg_.steps;
    if (val_ && ((cfg_.eval_every > 0 && step % cfg_.eval_every == 0) || last)) {
      const double vl = validation_loss();
      log_->val_point(step, vl);
      log_->metrics({{"step", step}, {"val_loss", vl}});
      log_->write_plot();
      log_->print(fmt::format("step {:>6}/{} | val loss {:.4f} | train loss {:.4f}", step, cfg_.steps, vl, loss));
    }
    if (root_ && cfg_.sample_every > 0 && step % cfg_.sample_every == 0)
      log_->print(fmt::format("---- sample at step {} ----\n{}\n----", step, sample()));
    if ((cfg_.save_every > 0 && step % cfg_.save_every == 0) || last)
      save(step, elapsed, tokens_before_ + static_cast<uint64_t>(step - start_step_) * tokens_per_step);
    if (hooks.stop_after && hooks.stop_after(step)) {
      log_->finish();
      return;
    }
  }
  if (!val_) log_->write_plot();
  log_->finish();
  log_->print(fmt::format("done: {} steps, final train loss {:.4f}; model and checkpoint in {}", cfg_.steps,
                          last_loss, cfg_.out_dir));
}

}  // namespace

void train(const TrainConfig& cfg) {
  dist::Communicator& comm = cfg.comm ? *cfg.comm : dist::world();
  if (comm.size() == 1) {
    Run run(cfg, comm);
    run.go();
    return;
  }
  try {
    Run run(cfg, comm);
    run.go();
  } catch (const dist::CollectiveError&) {
    throw;
  } catch (const std::bad_alloc&) {
    comm.abort(fmt::format("gpt: error: [rank {}] out of memory", comm.rank()));
  } catch (const std::exception& e) {
    comm.abort(fmt::format("gpt: error: [rank {}] {}", comm.rank(), e.what()));
  }
}

}  // namespace gpt
