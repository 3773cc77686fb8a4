// llm.c model checkpoints (gpt2_124M.bin and the files llm.c's train_gpt2 writes):
//   256 x int32 header: [0] magic 20240326, [1] version (3: float32, 5: bfloat16), [2] max_seq_len,
//   [3] vocab_size, [4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size
//   then every parameter, tensor by tensor, each tensor stacked over the layers:
//   wte [Vp, C] (rows >= vocab_size are padding), wpe [T, C], ln1w [L, C], ln1b [L, C],
//   qkvw [L, 3C, C], qkvb [L, 3C], attprojw [L, C, C], attprojb [L, C], ln2w [L, C], ln2b [L, C],
//   fcw [L, 4C, C], fcb [L, 4C], fcprojw [L, C, 4C], fcprojb [L, C], lnfw [C], lnfb [C].
// Matrices are PyTorch nn.Linear weights, [out, in]: the transpose of GPT-2's Conv1D [in, out]
// that gpt.cpp keeps. The format holds only GPT-2's shape: pre-LN, dense attention, biases, tied
// head, LayerNorm epsilon 1e-5. See docs/checkpoints.md.
#pragma once
#include <string>

#include "model/gpt.h"

namespace gpt {

// Reads a version 3 (float32) or 5 (bfloat16) checkpoint. Throws gpt::Error on a bad magic or
// version, impossible sizes, or a file length that does not match the header.
GPT load_llmc(const std::string& path);

// Writes a version 3 (float32) checkpoint atomically, the vocabulary padded to a multiple of 128
// rows with zeros as llm.c does. Throws gpt::Error for a model the format cannot hold.
void save_llmc(const std::string& path, const GPT& model);

}  // namespace gpt
