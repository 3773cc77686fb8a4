// Fine-tuning data: the record readers (JSONL, JSON array, CSV, TSV) and the prompt templates.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/error.h"
#include "finetune/records.h"
#include "finetune/template.h"

namespace gpt {
namespace {

std::string error_of(std::string_view content, const std::string& path, ReadOptions opt = {}) {
  opt.warn = false;
  try {
    parse_records(content, path, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Records, JsonlWithBlankLinesCrlfAndBom) {
  std::string text = "\xEF\xBB\xBF{\"a\": \"x\", \"n\": 3}\r\n\r\n  \n{\"a\": \"y\\nz\"}\r\n";
  ReadReport rep;
  auto recs = parse_records(text, "d.jsonl", {}, &rep);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(rep.format, RecordFormat::Jsonl);
  EXPECT_EQ(recs[0].line, 1u);
  EXPECT_EQ(recs[1].line, 4u);
  EXPECT_EQ(*record_text(recs[0], "a"), "x");
  EXPECT_EQ(*record_text(recs[0], "n"), "3");
  EXPECT_EQ(*record_text(recs[1], "a"), "y\nz");
  EXPECT_FALSE(record_text(recs[1], "n").has_value());
}

TEST(Records, JsonlBadLinesRejectOrSkip) {
  std::string text = "{\"a\": 1}\n{\"a\": \n[1, 2]\n{\"a\": 2}\n";
  EXPECT_EQ(error_of(text, "d.jsonl").rfind("d.jsonl:2: invalid JSON (", 0), 0u) << error_of(text, "d.jsonl");
  EXPECT_NE(error_of(text, "d.jsonl").find("(2 malformed lines in all; --skip-bad-lines skips them)"),
            std::string::npos);
  ReadOptions opt;
  opt.skip_bad_lines = true;
  opt.warn = false;
  ReadReport rep;
  auto recs = parse_records(text, "d.jsonl", opt, &rep);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].line, 4u);
  EXPECT_EQ(rep.bad_lines, 2u);
  ASSERT_EQ(rep.bad.size(), 2u);
  EXPECT_EQ(rep.bad[1], "d.jsonl:3: expected a JSON object, got array");
}

// A number beyond double's range is the JSON library's out_of_range, not a parse_error: it is a
// bad line like any other (the fuzzer found it), in JSONL and in JSON arrays.
TEST(Records, NumbersOutOfRangeAreBadLines) {
  EXPECT_EQ(error_of("{\"a\": 1}\n{\"a\": 1e999}\n", "d.jsonl")
                .rfind("d.jsonl:2: invalid JSON (number overflow", 0),
            0u)
      << error_of("{\"a\": 1}\n{\"a\": 1e999}\n", "d.jsonl");
  EXPECT_EQ(error_of("[{\"a\": 1},\n {\"a\": 6666666E66666666666666}]", "d.json")
                .rfind("d.json:2: invalid JSON in the record starting here (number overflow", 0),
            0u)
      << error_of("[{\"a\": 1},\n {\"a\": 6666666E66666666666666}]", "d.json");
}

TEST(Records, EmptyAndRecordless) {
  EXPECT_EQ(error_of("", "e.jsonl"), "e.jsonl: the file is empty");
  EXPECT_EQ(error_of("\xEF\xBB\xBF \n\n", "e.csv"), "e.csv: the file is empty");
  EXPECT_EQ(error_of("[]", "e.json"), "e.json: no records");
  EXPECT_EQ(error_of("text,label\n", "e.csv"), "e.csv: no records");
  EXPECT_EQ(error_of("hello", "e.txt"),
            "e.txt: cannot tell the data format from the name; pass --format jsonl|json|csv|tsv");
  ReadOptions opt;
  opt.skip_bad_lines = true;
  EXPECT_EQ(error_of("oops\n", "e.jsonl", opt), "e.jsonl: no records");
}

TEST(Records, JsonArrayLinesAndBadElements) {
  std::string text =
      "[\n  {\"instruction\": \"a, [b]\", \"output\": \"}\"},\n  {\"x\":\n   \"\\\"q\\\"\"},\n"
      "  5,\n  {\"x\": tru}\n]\n";
  EXPECT_EQ(error_of(text, "d.json").rfind("d.json:5: expected a JSON object, got number", 0), 0u)
      << error_of(text, "d.json");
  ReadOptions opt;
  opt.skip_bad_lines = true;
  opt.warn = false;
  ReadReport rep;
  auto recs = parse_records(text, "d.json", opt, &rep);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].line, 2u);
  EXPECT_EQ(recs[1].line, 3u);
  EXPECT_EQ(*record_text(recs[0], "instruction"), "a, [b]");
  EXPECT_EQ(*record_text(recs[1], "x"), "\"q\"");
  EXPECT_EQ(rep.bad_lines, 2u);
  EXPECT_EQ(rep.bad[1].rfind("d.json:6: invalid JSON", 0), 0u);
  EXPECT_EQ(error_of("[{\"a\": 1},\n{\"a\": 2}", "d.json"), "d.json:2: the JSON array is never closed");
  EXPECT_EQ(error_of("{\"a\": 1}", "d.json"), "d.json:1: expected a JSON array of records ('[' ... ']')");
}

TEST(Records, CsvQuotingCrlfAndLineNumbers) {
  std::string text =
      "\xEF\xBB\xBFtext,label\r\n"
      "plain,a\r\n"
      "\"with, comma\",b\r\n"
      "\r\n"
      "\"two\r\nlines \"\"quoted\"\"\",c\r\n"
      "\"\",d";
  auto recs = parse_records(text, "d.csv");
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[0].line, 2u);
  EXPECT_EQ(recs[1].line, 3u);
  EXPECT_EQ(recs[2].line, 5u);
  EXPECT_EQ(recs[3].line, 7u);
  EXPECT_EQ(*record_text(recs[1], "text"), "with, comma");
  EXPECT_EQ(*record_text(recs[2], "text"), "two\r\nlines \"quoted\"");
  EXPECT_EQ(*record_text(recs[2], "label"), "c");
  EXPECT_EQ(*record_text(recs[3], "text"), "");
  EXPECT_EQ(*record_text(recs[3], "label"), "d");
}

TEST(Records, CsvBadRows) {
  std::string text = "text,label\nok,a\ntoo,many,fields\n\"x\"y,b\nfine,c\n";
  EXPECT_EQ(error_of(text, "d.csv"),
            "d.csv:3: 3 fields, expected 2 (2 malformed lines in all; --skip-bad-lines skips them)");
  ReadOptions opt;
  opt.skip_bad_lines = true;
  opt.warn = false;
  ReadReport rep;
  auto recs = parse_records(text, "d.csv", opt, &rep);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].line, 5u);
  EXPECT_EQ(rep.bad[1], "d.csv:4: unexpected character 'y' after a closing quote");
  // An unclosed quote swallows the rest: never skippable.
  EXPECT_EQ(error_of("text,label\nok,a\n\"open,b\nc,d\n", "d.csv", opt),
            "d.csv:3: a quoted field is never closed");
  EXPECT_EQ(error_of("a,a\n1,2\n", "d.csv"), "d.csv:1: header names \"a\" twice");
}

TEST(Records, TsvWithColumnsAndFormatOverride) {
  std::string text = "ham\tGo until jurong point, \"crazy\"\nspam\tFree entry\n";
  ReadOptions opt;
  opt.format = RecordFormat::Tsv;
  opt.columns = {"label", "text"};
  auto recs = parse_records(text, "SMSSpamCollection", opt);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(*record_text(recs[0], "text"), "Go until jurong point, \"crazy\"");
  EXPECT_EQ(*record_text(recs[1], "label"), "spam");
  EXPECT_EQ(recs[1].line, 2u);
  EXPECT_EQ(detect_record_format("x.TSV", ""), RecordFormat::Tsv);
  EXPECT_EQ(detect_record_format("noext", " [ {} ]"), RecordFormat::Json);
}

TEST(Records, BundledInstructionData) {
  auto recs = read_records(std::string(GPT_SOURCE_DIR) + "/data/instruction-data.json");
  ASSERT_EQ(recs.size(), 1100u);
  EXPECT_EQ(*record_text(recs[2], "instruction"), "Convert 45 kilometers to meters.");
  EXPECT_EQ(recs[2].line, 12u);
}

// ---- templates ----

TEST(Template, AlpacaExactText) {
  auto segs = render_alpaca("Add the numbers.", "2 and 3", "5");
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].text,
            "Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n"
            "### Response:\n");
  EXPECT_FALSE(segs[0].trained);
  EXPECT_EQ(segs[1].text, "5");
  EXPECT_TRUE(segs[1].trained && segs[2].trained && segs[2].eot);
  EXPECT_EQ(instruction_prompt("Say hi."),
            "Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n");
  EXPECT_EQ(summarize_prompt("Long text."), "Long text.\nTL;DR: ");
}

TEST(Template, ChatExactTextAndPrompt) {
  std::vector<ChatMessage> msgs = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
  EXPECT_EQ(chat_prompt(msgs),
            "### System:\nBe brief.\n\n### User:\nHi\n\n### Assistant:\nHello!<|endoftext|>\n\n"
            "### User:\nBye\n\n### Assistant:\n");
  msgs.push_back({"assistant", "Goodbye."});
  std::string all;
  std::string trained;
  for (const Segment& s : render_chat(msgs)) {
    all += s.text;
    if (s.trained) trained += s.text;
  }
  EXPECT_EQ(all,
            "### System:\nBe brief.\n\n### User:\nHi\n\n### Assistant:\nHello!<|endoftext|>\n\n"
            "### User:\nBye\n\n### Assistant:\nGoodbye.<|endoftext|>");
  EXPECT_EQ(trained, "Hello!<|endoftext|>Goodbye.<|endoftext|>");
}

TEST(Template, MaskCoversResponseAndEot) {
  auto tok = gpt2_tokenizer();
  auto segs = render_alpaca("Name a color.", "", "Blue <|endoftext|> is one.");
  EncodedExample ex = encode_segments(*tok, segs);
  std::vector<TokenId> prompt = tok->encode(instruction_prompt("Name a color."));
  std::vector<TokenId> resp = tok->encode("Blue <|endoftext|> is one.");  // as ordinary text
  ASSERT_EQ(ex.ids.size(), prompt.size() + resp.size() + 1);
  ASSERT_EQ(ex.trained.size(), ex.ids.size());
  for (size_t i = 0; i < ex.ids.size(); ++i) {
    bool in_resp = i >= prompt.size();
    EXPECT_EQ(ex.trained[i], in_resp ? 1 : 0) << i;
    if (i < prompt.size()) {
      EXPECT_EQ(ex.ids[i], prompt[i]);
    } else if (i < prompt.size() + resp.size()) {
      EXPECT_EQ(ex.ids[i], resp[i - prompt.size()]);
    }
  }
  EXPECT_EQ(ex.ids.back(), 50256u);
  // Only the final token is the end-of-text id: the literal in the text stayed text.
  EXPECT_EQ(std::count(ex.ids.begin(), ex.ids.end(), 50256u), 1);
  // The chat prompt's ids are the training ids of the same conversation up to the reply.
  std::vector<ChatMessage> msgs = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
  std::vector<TokenId> p = chat_prompt_ids(*tok, msgs);
  msgs.push_back({"assistant", "Ciao."});
  EncodedExample full = encode_segments(*tok, render_chat(msgs));
  ASSERT_GT(full.ids.size(), p.size());
  EXPECT_TRUE(std::equal(p.begin(), p.end(), full.ids.begin()));
  int trained = 0;
  for (size_t i = 0; i < full.ids.size(); ++i) trained += full.trained[i];
  EXPECT_EQ(trained, static_cast<int>(tok->encode("Hello!").size() + tok->encode("Ciao.").size() + 2));
}

// A template file: {field} placeholders from the record ({{ }} are braces), the prompt untrained,
// the response and <|endoftext|> trained; as a generation task its prompt and its filled response
// (the reference) and stop strings; every malformed file is one error naming it.
TEST(Template, FromAFile) {
  const std::string dir = ::testing::TempDir();
  auto write = [&](const std::string& name, const std::string& body) {
    const std::string path = dir + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(body.data(), 1, body.size(), f);
    std::fclose(f);
    return path;
  };
  const std::string qa =
      write("qa.json", R"({"prompt": "Q: {question} {{x}}\nA:", "response": " {answer}", "stop": ["\n"]})");
  const PromptTemplate t = load_template(qa);
  EXPECT_EQ(t.kind, TemplateKind::File);
  const Record r{nlohmann::json::parse(R"({"question": "2+2?", "answer": "4"})"), 7};
  const std::vector<Segment> segs = render_record(r, t, "d.jsonl");
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].text, "Q: 2+2? {x}\nA:");
  EXPECT_FALSE(segs[0].trained);
  EXPECT_EQ(segs[1].text, " 4");
  EXPECT_TRUE(segs[1].trained);
  EXPECT_TRUE(segs[2].eot && segs[2].trained);
  const GenerationTask g = record_generation_task(r, t, "d.jsonl");
  ASSERT_EQ(g.prompt.size(), 1u);
  EXPECT_EQ(g.prompt[0].text, "Q: 2+2? {x}\nA:");
  EXPECT_EQ(g.reference, " 4");
  EXPECT_EQ(g.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(load_template("alpaca").kind, TemplateKind::Alpaca);
  // A missing field names the record.
  try {
    render_record(Record{nlohmann::json::parse(R"({"question": "x"})"), 9}, t, "d.jsonl");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d.jsonl:9"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("answer"), std::string::npos) << e.what();
  }
  for (const auto& [body, what] : std::vector<std::pair<std::string, std::string>>{
           {"[1]", "JSON object"},
           {"{\"prompt\": \"a\"", "JSON object"},
           {R"({"prompt": "a {x"})", "opens no"},
           {R"({"prompt": "a {} b", "response": "r"})", "opens no"},
           {R"({"prompt": "a } b", "response": "r"})", "lone"},
           {R"({"prompt": "p"})", "\"response\" is required"},
           {R"({"response": "r"})", "\"prompt\" is required"},
           {R"({"prompt": 3, "response": "r"})", "must be a string"},
           {R"({"prompt": "p", "response": "r", "stop": [""]})", "non-empty"},
           {R"({"prompt": "p", "response": "r", "extra": 1})", "unknown key"},
       }) {
    const std::string path = write("bad.json", body);
    try {
      load_template(path);
      ADD_FAILURE() << body;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << body << ": " << e.what();
    }
  }
  try {
    load_template("no-such-template");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("template file"), std::string::npos) << e.what();
  }
}

TEST(Template, ChatHistoryTrimmedOldestTurnsFirst) {
  auto tok = gpt2_tokenizer();
  std::vector<ChatMessage> msgs = {{"system", "Be brief."},    {"user", "one two three"},
                                   {"assistant", "four five"}, {"user", "six"},
                                   {"assistant", "seven"},     {"user", "eight nine"}};
  std::vector<ChatMessage> full = msgs;
  EXPECT_EQ(fit_chat_history(msgs, *tok, 1000), 0u);
  // A budget that fits everything but the first turn.
  std::vector<ChatMessage> rest = {full[0], full[3], full[4], full[5]};
  const size_t need = chat_prompt_ids(*tok, rest).size();
  ASSERT_LT(need, chat_prompt_ids(*tok, full).size());
  EXPECT_EQ(fit_chat_history(msgs, *tok, need), 2u);
  ASSERT_EQ(msgs.size(), 4u);
  EXPECT_EQ(msgs[0].content, "Be brief.");
  EXPECT_EQ(msgs[1].content, "six");
  // Too small for anything: the system message and the newest message stay.
  EXPECT_EQ(fit_chat_history(msgs, *tok, 1), 2u);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[1].content, "eight nine");
}

TEST(Template, RecordErrors) {
  auto err = [](const std::string& json, TemplateKind k) -> std::string {
    Record r{nlohmann::json::parse(json), 7};
    try {
      render_record(r, k, "f.jsonl");
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_EQ(err(R"({"instruction": "x", "output": ""})", TemplateKind::Auto),
            "f.jsonl:7: field \"output\" is empty");
  EXPECT_EQ(err(R"({"instruction": "x"})", TemplateKind::Alpaca), "f.jsonl:7: no field \"output\"");
  EXPECT_EQ(err(R"({"messages": [{"role": "user", "content": "a"}]})", TemplateKind::Auto),
            "f.jsonl:7: no assistant message to train on");
  EXPECT_EQ(err(R"({"messages": [{"role": "bot", "content": "a"}]})", TemplateKind::Chat),
            "f.jsonl:7: message 1 has role \"bot\" (expected system, user or assistant)");
  EXPECT_EQ(err(R"({"prompt": "a"})", TemplateKind::Auto).rfind("f.jsonl:7: cannot tell the template", 0),
            0u);
  EXPECT_EQ(err(R"({"text": "a", "summary": "b"})", TemplateKind::Summarize), "(no error)");
}

}  // namespace
}  // namespace gpt
