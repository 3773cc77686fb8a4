// Turns a stream of token bytes into text that is always valid UTF-8, piece by piece.
//
// A GPT-2 token can end in the middle of a multi-byte character (an emoji is often split over two
// or three tokens), so the bytes of an incomplete sequence at the end are held back until the
// bytes that complete it arrive. Bytes that cannot become valid UTF-8 are never held: each
// maximal invalid subsequence is replaced by U+FFFD at once (the "replace" rule of Python's
// bytes.decode and of WHATWG), so at most 3 bytes ever wait and output never stalls. finish()
// flushes a held incomplete sequence as U+FFFD.
#pragma once
#include <string>
#include <string_view>

namespace gpt {

class Utf8Stream {
 public:
  // Appends to `out` the text that `bytes` completes.
  void push(std::string_view bytes, std::string& out);
  // End of stream: a held incomplete sequence becomes U+FFFD.
  void finish(std::string& out);
  // Bytes now held back (0..3).
  size_t pending() const { return held_.size(); }

 private:
  void push_byte(unsigned char b, std::string& out);
  std::string held_;  // an incomplete but so far valid sequence
  int need_ = 0;      // bytes still missing from it
};

// The whole of `bytes` made valid UTF-8 by the same rule.
std::string sanitize_utf8(std::string_view bytes);

}  // namespace gpt
