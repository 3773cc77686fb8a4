// Prompt templates for instruction tuning, dialogue and summarization. A template renders one
// example into segments of text, each marked trained (the response: its tokens are scored) or not
// (the prompt). Segments are tokenised one by one and concatenated, and inference builds its prompt
// from the same segments, so a prompt is tokenised identically in training and at generation time.
// The exact strings are in docs/instruction-tuning.md.
//
//   alpaca     "Below is an instruction that describes a task. Write a response that appropriately
//              completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n
//              ### Response:\n" (no Input section when input is empty), then {output}<|endoftext|>
//   chat       per message: "### System:\n{c}\n\n", "### User:\n{c}\n\n",
//              "### Assistant:\n{c}<|endoftext|>\n\n" (trained: {c}<|endoftext|>); a generation prompt
//              ends with "### Assistant:\n" and the reply stops at <|endoftext|>
//   summarize  "{text}\nTL;DR: " then {summary}<|endoftext|> (the GPT-2 paper's TL;DR: prompt)
//   a file     your own (load_template): a JSON object {"prompt": "...", "response": "...", "stop":
//              [...]} whose {field} placeholders take the record's fields ({{ and }} are braces):
//              the prompt untrained, then the response and <|endoftext|> trained
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "finetune/records.h"
#include "tokenizer/tokenizer.h"

namespace gpt {

inline constexpr std::string_view kEndOfText = "<|endoftext|>";

struct Segment {
  std::string text;
  bool trained = false;
  bool eot = false;  // the <|endoftext|> token itself (text is ignored)
};

enum class TemplateKind { Auto, Alpaca, Chat, Summarize, File };
TemplateKind parse_template(std::string_view name);  // "auto" | "alpaca" | "chat" | "summarize"
const char* template_name(TemplateKind kind);

// A template: a built-in kind, or one read from a file (kind File), whose texts have {field}
// placeholders. Converts from a kind, so a built-in is passed as its kind.
struct PromptTemplate {
  TemplateKind kind = TemplateKind::Auto;
  std::string prompt, response;   // File: the texts with placeholders
  std::vector<std::string> stop;  // File: strings that end a generated answer (besides <|endoftext|>)
  std::string path;               // File: where it came from
  PromptTemplate(TemplateKind k = TemplateKind::Auto) : kind(k) {}  // NOLINT: implicit on purpose
};
// A built-in name (parse_template), or else the path of a template file. Throws gpt::Error naming
// the file on an unreadable file, bad JSON, an unknown or missing key, or an unbalanced brace.
PromptTemplate load_template(std::string_view spec);
// The file template's text with the record's fields in place (a missing field is an error naming
// PATH:LINE and the field).
std::string fill_template(std::string_view text, const Record& r, const std::string& path);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The rendered examples (prompt untrained; response and the final <|endoftext|> trained).
std::vector<Segment> render_alpaca(const std::string& instruction, const std::string& input,
                                   const std::string& output);
std::vector<Segment> render_chat(const std::vector<ChatMessage>& messages);
std::vector<Segment> render_summarize(const std::string& text, const std::string& summary);

// The template that fits a record's fields: "messages" -> chat, "instruction" -> alpaca,
// "summary" -> summarize.
TemplateKind detect_template(const Record& r);
// Renders a record with a template (Auto: detect_template). Throws gpt::Error "PATH:LINE: ..." on
// a missing or empty field, a bad message list or nothing to train on.
std::vector<Segment> render_record(const Record& r, const PromptTemplate& tmpl, const std::string& path);
// A record's "messages" as ChatMessages (errors as above).
std::vector<ChatMessage> record_messages(const Record& r, const std::string& path);

// Token ids and a mask (1 = trained) of the same length. Text is encoded as ordinary text (a
// literal "<|endoftext|>" in user text stays text); eot segments are the tokenizer's end-of-text id.
struct EncodedExample {
  std::vector<TokenId> ids;
  std::vector<uint8_t> trained;
};
EncodedExample encode_segments(const Tokenizer& tok, std::span<const Segment> segments);
// The tokenizer's <|endoftext|> id; gpt::Error if it has none.
TokenId require_eot(const Tokenizer& tok);

// A record as a generation task (gpt eval --generate): the prompt the template gives the model (the
// segments training renders before the response, so it tokenises the same), the reference answer,
// and the strings that end the model's answer besides <|endoftext|> (summarize: a newline; chat: the
// next "\n### " header; alpaca: none; a file: its "stop").
//   alpaca     prompt from "instruction" (+ "input"); reference "output"
//   summarize  prompt from `text_field` (default "text"); reference "summary"
//   a file     prompt: its "prompt" filled; reference: its "response" filled
//   chat       prompt from "messages" up to the last one, which must be the assistant's reply and is
//              the reference; with `reference_field` the whole list is the prompt (ending with a
//              user or system message) and that field is the reference
// A non-empty `reference_field` replaces the template's reference field. Auto: detect_template.
// Throws gpt::Error "PATH:LINE: ..." on a missing or empty prompt field or a missing reference.
struct GenerationTask {
  TemplateKind kind = TemplateKind::Auto;
  std::vector<Segment> prompt;
  std::string reference;
  std::vector<std::string> stop;
};
GenerationTask record_generation_task(const Record& r, const PromptTemplate& tmpl, const std::string& path,
                                      const std::string& text_field = "text",
                                      const std::string& reference_field = "");

// Generation prompts, ending where the model's answer starts.
std::string instruction_prompt(const std::string& instruction, const std::string& input = "");
std::string summarize_prompt(const std::string& text);
// The conversation so far (any assistant turns closed with <|endoftext|>), then "### Assistant:\n".
std::vector<Segment> chat_prompt_segments(const std::vector<ChatMessage>& messages);
std::string chat_prompt(const std::vector<ChatMessage>& messages);
// The ids to feed the model: use these rather than encoding chat_prompt()'s text, which can split
// differently at segment boundaries.
std::vector<TokenId> chat_prompt_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages);
// Drops the oldest turns (a user message and the replies after it; system messages stay) until the
// chat prompt takes at most `budget` tokens or only the system messages and the newest message are
// left. Returns the number of messages dropped.
size_t fit_chat_history(std::vector<ChatMessage>& messages, const Tokenizer& tok, size_t budget);

}  // namespace gpt
