#include "finetune/template.h"

#include <filesystem>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

namespace gpt {

namespace {

constexpr std::string_view kAlpacaPreamble =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.";

Segment text(std::string s, bool trained) { return {std::move(s), trained, false}; }
Segment eot() { return {std::string(kEndOfText), true, true}; }

std::string role_header(const std::string& role) {
  if (role == "system") return "### System:\n";
  if (role == "user") return "### User:\n";
  if (role == "assistant") return "### Assistant:\n";
  fail("unknown chat role \"{}\" (expected system, user or assistant)", role);
}

// Appends one message; an assistant turn is trained (its content and the closing end-of-text).
void append_message(std::vector<Segment>& out, const ChatMessage& m, bool last) {
  if (m.role == "assistant") {
    out.push_back(text(role_header(m.role), false));
    out.push_back(text(m.content, true));
    out.push_back(eot());
    if (!last) out.push_back(text("\n\n", false));
  } else {
    out.push_back(text(role_header(m.role) + m.content + "\n\n", false));
  }
}

std::string nonempty_field(const Record& r, std::string_view field, const std::string& path) {
  std::string s = require_text(r, field, path);
  if (s.empty()) fail("{}:{}: field \"{}\" is empty", path, r.line, field);
  return s;
}

}  // namespace

TemplateKind parse_template(std::string_view name) {
  if (name == "auto") return TemplateKind::Auto;
  if (name == "alpaca") return TemplateKind::Alpaca;
  if (name == "chat") return TemplateKind::Chat;
  if (name == "summarize") return TemplateKind::Summarize;
  fail("unknown template \"{}\" (expected auto, alpaca, chat or summarize)", name);
}

const char* template_name(TemplateKind kind) {
  switch (kind) {
    case TemplateKind::Auto:
      return "auto";
    case TemplateKind::Alpaca:
      return "alpaca";
    case TemplateKind::Chat:
      return "chat";
    case TemplateKind::Summarize:
      return "summarize";
    case TemplateKind::File:
      return "file";
  }
  return "?";
}

namespace {

// Checks a template text's braces: {name} with a non-empty name without braces, {{ and }}.
void check_braces(std::string_view t, const std::string& path, const char* key) {
  for (size_t i = 0; i < t.size(); i++) {
    if (t[i] == '{' && i + 1 < t.size() && t[i + 1] == '{') {
      i++;
    } else if (t[i] == '}' && i + 1 < t.size() && t[i + 1] == '}') {
      i++;
    } else if (t[i] == '{') {
      const size_t end = t.find_first_of("{}", i + 1);
      if (end == std::string_view::npos || t[end] != '}' || end == i + 1)
        fail("{}: \"{}\": a '{{' at offset {} opens no {{field}} (write {{{{ for a brace)", path, key, i);
      i = end;
    } else if (t[i] == '}') {
      fail("{}: \"{}\": a lone '}}' at offset {} (write }}}} for a brace)", path, key, i);
    }
  }
}

}  // namespace

PromptTemplate load_template(std::string_view spec) {
  if (spec == "auto" || spec == "alpaca" || spec == "chat" || spec == "summarize") return parse_template(spec);
  const std::string path(spec);
  if (!std::filesystem::is_regular_file(path))
    fail("unknown template \"{}\" (expected auto, alpaca, chat, summarize or a template file)", spec);
  std::string err;
  const std::optional<nlohmann::json> j = try_parse_json(read_file(path), &err, nullptr, 8);
  if (!j || !j->is_object()) fail("{}: a template file is a JSON object ({})", path, j ? "not an object" : err);
  PromptTemplate t(TemplateKind::File);
  t.path = path;
  bool have_prompt = false, have_response = false;
  for (const auto& [k, v] : j->items()) {
    if (k == "prompt" || k == "response") {
      if (!v.is_string()) fail("{}: \"{}\" must be a string", path, k);
      (k == "prompt" ? t.prompt : t.response) = v.get<std::string>();
      (k == "prompt" ? have_prompt : have_response) = true;
      check_braces(v.get<std::string>(), path, k.c_str());
    } else if (k == "stop") {
      if (!v.is_array()) fail("{}: \"stop\" must be an array of strings", path);
      for (const auto& x : v) {
        if (!x.is_string() || x.get<std::string>().empty())
          fail("{}: \"stop\" must hold non-empty strings", path);
        t.stop.push_back(x.get<std::string>());
      }
    } else {
      fail("{}: unknown key \"{}\" (a template file has \"prompt\", \"response\" and \"stop\")", path, k);
    }
  }
  if (!have_prompt || t.prompt.empty()) fail("{}: \"prompt\" is required and must not be empty", path);
  if (!have_response || t.response.empty()) fail("{}: \"response\" is required and must not be empty", path);
  return t;
}

std::string fill_template(std::string_view t, const Record& r, const std::string& path) {
  std::string out;
  for (size_t i = 0; i < t.size(); i++) {
    if ((t[i] == '{' || t[i] == '}') && i + 1 < t.size() && t[i + 1] == t[i]) {
      out += t[i++];
    } else if (t[i] == '{') {
      const size_t end = t.find('}', i + 1);  // balanced: load_template checked
      out += require_text(r, t.substr(i + 1, end - i - 1), path);
      i = end;
    } else {
      out += t[i];
    }
  }
  return out;
}

std::string instruction_prompt(const std::string& instruction, const std::string& input) {
  std::string p(kAlpacaPreamble);
  p += "\n\n### Instruction:\n" + instruction;
  if (!input.empty()) p += "\n\n### Input:\n" + input;
  p += "\n\n### Response:\n";
  return p;
}

std::string summarize_prompt(const std::string& t) { return t + "\nTL;DR: "; }

std::vector<Segment> render_alpaca(const std::string& instruction, const std::string& input,
                                   const std::string& output) {
  return {text(instruction_prompt(instruction, input), false), text(output, true), eot()};
}

std::vector<Segment> render_summarize(const std::string& t, const std::string& summary) {
  return {text(summarize_prompt(t), false), text(summary, true), eot()};
}

std::vector<Segment> render_chat(const std::vector<ChatMessage>& messages) {
  std::vector<Segment> out;
  for (size_t i = 0; i < messages.size(); ++i) append_message(out, messages[i], i + 1 == messages.size());
  return out;
}

std::vector<Segment> chat_prompt_segments(const std::vector<ChatMessage>& messages) {
  std::vector<Segment> out;
  for (const ChatMessage& m : messages) append_message(out, m, false);
  out.push_back(text("### Assistant:\n", false));
  return out;
}

std::string chat_prompt(const std::vector<ChatMessage>& messages) {
  std::string s;
  for (const Segment& seg : chat_prompt_segments(messages)) s += seg.text;
  return s;
}

TokenId require_eot(const Tokenizer& tok) {
  auto e = tok.eot_token();
  if (!e) fail("the model's vocabulary has no <|endoftext|> token, which the templates need");
  return *e;
}

EncodedExample encode_segments(const Tokenizer& tok, std::span<const Segment> segments) {
  EncodedExample ex;
  for (const Segment& s : segments) {
    size_t before = ex.ids.size();
    if (s.eot) {
      ex.ids.push_back(require_eot(tok));
    } else if (!s.text.empty()) {
      std::vector<TokenId> ids = tok.encode(s.text, AllowedSpecial::none());
      ex.ids.insert(ex.ids.end(), ids.begin(), ids.end());
    }
    ex.trained.resize(ex.ids.size(), 0);
    for (size_t i = before; i < ex.ids.size(); ++i) ex.trained[i] = s.trained ? 1 : 0;
  }
  return ex;
}

std::vector<TokenId> chat_prompt_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages) {
  return encode_segments(tok, chat_prompt_segments(messages)).ids;
}

size_t fit_chat_history(std::vector<ChatMessage>& messages, const Tokenizer& tok, size_t budget) {
  size_t dropped = 0;
  auto first_turn = [&] {
    for (size_t i = 0; i < messages.size(); ++i)
      if (messages[i].role != "system") return i;
    return messages.size();
  };
  while (chat_prompt_ids(tok, messages).size() > budget) {
    size_t i = first_turn();
    if (i + 1 >= messages.size()) break;  // only the newest message is left to drop
    messages.erase(messages.begin() + static_cast<std::ptrdiff_t>(i));
    ++dropped;
    // The replies to the dropped message go with it.
    while (i + 1 < messages.size() && messages[i].role == "assistant") {
      messages.erase(messages.begin() + static_cast<std::ptrdiff_t>(i));
      ++dropped;
    }
  }
  return dropped;
}

std::vector<ChatMessage> record_messages(const Record& r, const std::string& path) {
  auto it = r.fields.find("messages");
  if (it == r.fields.end() || !it->is_array())
    fail("{}:{}: \"messages\" must be a list of {{\"role\", \"content\"}} objects", path, r.line);
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& m = (*it)[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      fail("{}:{}: message {} needs string fields \"role\" and \"content\"", path, r.line, i + 1);
    ChatMessage cm{m["role"].get<std::string>(), m["content"].get<std::string>()};
    if (cm.role != "system" && cm.role != "user" && cm.role != "assistant")
      fail("{}:{}: message {} has role \"{}\" (expected system, user or assistant)", path, r.line, i + 1,
           cm.role);
    if (cm.content.empty()) fail("{}:{}: message {} is empty", path, r.line, i + 1);
    out.push_back(std::move(cm));
  }
  return out;
}

TemplateKind detect_template(const Record& r) {
  if (r.fields.contains("messages")) return TemplateKind::Chat;
  if (r.fields.contains("instruction")) return TemplateKind::Alpaca;
  if (r.fields.contains("summary")) return TemplateKind::Summarize;
  return TemplateKind::Auto;
}

namespace {

[[noreturn]] void undetected(const Record& r, const std::string& path) {
  fail(
      "{}:{}: cannot tell the template from the fields (expected \"messages\", \"instruction\" "
      "or \"text\" + \"summary\"); pass --template",
      path, r.line);
}

}  // namespace

GenerationTask record_generation_task(const Record& r, const PromptTemplate& tmpl, const std::string& path,
                                      const std::string& text_field, const std::string& reference_field) {
  TemplateKind kind = tmpl.kind == TemplateKind::Auto ? detect_template(r) : tmpl.kind;
  GenerationTask t;
  t.kind = kind;
  auto reference = [&](const char* own) {
    return require_text(r, reference_field.empty() ? own : reference_field, path);
  };
  switch (kind) {
    case TemplateKind::File:
      t.prompt = {text(fill_template(tmpl.prompt, r, path), false)};
      t.reference = reference_field.empty() ? fill_template(tmpl.response, r, path) : reference("");
      t.stop = tmpl.stop;
      return t;
    case TemplateKind::Alpaca:
      t.prompt = {text(
          instruction_prompt(nonempty_field(r, "instruction", path), record_text(r, "input").value_or("")),
          false)};
      t.reference = reference("output");
      return t;
    case TemplateKind::Summarize:
      t.prompt = {text(summarize_prompt(nonempty_field(r, text_field, path)), false)};
      t.reference = reference("summary");
      t.stop = {"\n"};
      return t;
    case TemplateKind::Chat: {
      std::vector<ChatMessage> msgs = record_messages(r, path);
      if (reference_field.empty()) {
        if (msgs.empty() || msgs.back().role != "assistant")
          fail("{}:{}: the last message must be the assistant's reply, the reference (or pass --ref-field)",
               path, r.line);
        t.reference = msgs.back().content;
        msgs.pop_back();
      } else {
        t.reference = reference("");
      }
      if (msgs.empty() || msgs.back().role == "assistant")
        fail("{}:{}: no user or system message for the model to answer", path, r.line);
      t.prompt = chat_prompt_segments(msgs);
      t.stop = {"\n### "};
      return t;
    }
    case TemplateKind::Auto:
      break;
  }
  undetected(r, path);
}

std::vector<Segment> render_record(const Record& r, const PromptTemplate& tmpl, const std::string& path) {
  const TemplateKind kind = tmpl.kind == TemplateKind::Auto ? detect_template(r) : tmpl.kind;
  switch (kind) {
    case TemplateKind::File:
      return {text(fill_template(tmpl.prompt, r, path), false), text(fill_template(tmpl.response, r, path), true),
              eot()};
    case TemplateKind::Alpaca:
      return render_alpaca(nonempty_field(r, "instruction", path), record_text(r, "input").value_or(""),
                           nonempty_field(r, "output", path));
    case TemplateKind::Summarize:
      return render_summarize(nonempty_field(r, "text", path), nonempty_field(r, "summary", path));
    case TemplateKind::Chat: {
      std::vector<ChatMessage> msgs = record_messages(r, path);
      bool any = false;
      for (const ChatMessage& m : msgs) any = any || m.role == "assistant";
      if (!any) fail("{}:{}: no assistant message to train on", path, r.line);
      return render_chat(msgs);
    }
    case TemplateKind::Auto:
      break;
  }
  undetected(r, path);
}

}  // namespace gpt
