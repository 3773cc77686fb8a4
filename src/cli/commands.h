// Each subcommand registers its options and its action on the CLI11 app (src/cli/cmd_*.cpp).
#pragma once
#include <CLI/CLI.hpp>

namespace gpt::cli {

void add_tokenize_commands(CLI::App& app);   // tokenize, detokenize
void add_bpe_train_commands(CLI::App& app);  // bpe-train, char-vocab
void add_bench_command(CLI::App& app);       // bench tokenizer
void add_info_command(CLI::App& app);        // info
void add_model_commands(CLI::App& app);      // init, logits
void add_eval_command(CLI::App& app);        // eval
void add_convert_command(CLI::App& app);     // convert
void add_generate_command(CLI::App& app);    // generate
void add_generate_bench(CLI::App* bench);    // bench generate
void add_model_benches(CLI::App* bench);     // bench forward, train-step, gemm
void add_train_command(CLI::App& app);       // train
void add_prepare_command(CLI::App& app);     // prepare
void add_quantize_command(CLI::App& app);    // quantize
void add_packed_bench(CLI::App* bench);      // bench packed
CLI::App* add_finetune_command(CLI::App& app);   // finetune instruct (returns `finetune`)
void add_finetune_classify(CLI::App* finetune);  // finetune classify (finetune/classify, branch wt-taskeval)
void add_chat_command(CLI::App& app);            // chat
void add_lora_commands(CLI::App& app);       // lora init, lora merge
void add_classify_command(CLI::App& app);     // classify
void add_attention_command(CLI::App& app);   // attention
void add_inspect_command(CLI::App& app);     // inspect
void add_serve_command(CLI::App& app);       // serve
void add_embed_command(CLI::App& app);       // embed

}  // namespace gpt::cli
