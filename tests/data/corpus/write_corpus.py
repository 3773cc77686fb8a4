"""Writes the tokenizer conformance corpus tests/data/corpus/*.txt (raw UTF-8 bytes).

The .txt files are the committed source of truth; this script documents exactly which bytes
they hold (invisible characters, \\r\\n, tabs, trailing blanks are spelled out as escapes here)
and can regenerate them. It is deterministic: pseudo-random parts use fixed seeds.
After changing it, rerun tools/gen_tiktoken_fixtures.py to refresh the .ids files.

Run: .venv/bin/python tests/data/corpus/write_corpus.py
"""
import base64
import hashlib
import math
import os
import random
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, text):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
ENGLISH_PROSE = """\
The Keeper's Log

The lighthouse keeper's log for 14 March 1987 has only three entries. At 04:10 he wrote "wind NNE, rising"; at 06:45, "fog, horn on"; and at 11:30, in a hand noticeably steadier than the others, "relief boat sighted, 2 nm off the point." Nobody knows why he stopped writing after that. The relief crew found the lamp trimmed, the kettle still warm, and a half-finished letter addressed to someone called "Dear M." It didn't say much. It said he'd been counting the gulls again (there were 212 of them on Tuesday, 219 on Wednesday) and that he'd finally learned to like the taste of tinned peaches.

"Are you sure it's the right key?" asked Priya.
"I'm sure it's *a* key," said Tomas. "Whether it's the right one, we'll find out."
"You'd think they'd label these things."
"They did. Somebody's label fell off in 1994, and we've been guessing ever since."
'Don't,' she said. 'You'll only make it worse.'
\u201cIt\u2019s not what you think,\u201d he said.
\u2018Isn\u2019t it?\u2019 she replied, and that was the end of that.

The invoice came to $12,480.50 (including 7.5% sales tax) and was due by 2023-11-30, or, as the supplier's clerk insisted on writing it, 30/11/2023. Payment arrived on Dec. 4th at 9:05 a.m.; the late fee was 1.25% per month, i.e. roughly $156.01. The city's population was listed as 8,336,817 in one table and 8.3 million in another, which is the kind of thing that keeps auditors employed. Call +1 (555) 013-2468 ext. 7 between 08:00 and 17:30 EST, Mon-Fri.

WARNING: DO NOT OPERATE THIS MACHINE WHILE IT'S RUNNING. THEY'RE NOT JOKING, AND WE'LL KNOW IF YOU'VE TRIED. I'D RECOMMEND READING PAGES 3-7 FIRST.

Some numbers worth remembering: the 3rd of May, the 21st century, the 102nd floor; 0.5 cups of flour; 1,000,000 (a million); 3.14159; -40 degrees, which is the same in Celsius and Fahrenheit; the '90s and the 1890s; a 24/7 service; a 50/50 chance; the year 1066, and 1776, and 2001. In 2024 roughly 47% of respondents said "maybe" - a result the pollsters described as "unhelpful, but honest."

Dr. O'Neill and Mrs. McAllister met at 221B Baker St. (not the famous one) on Fri., Aug. 9. The U.S.A., the U.K. and the E.U. were all represented; so were a well-known state-of-the-art start-up and a mother-in-law who had opinions about everything from the font size to the coffee... "Ten minutes," she said, "and not a minute more." It took forty-five.

There is a particular kind of silence in a library at closing time - not the absence of sound, exactly, but the sound of people trying not to make any. Pages turn more slowly. Chairs are pushed in with exaggerated care. Somewhere a radiator ticks. The librarian, who has seen ten thousand evenings like this one, switches off the lamps in the reading room one at a time, left to right, the way she always has; and the readers, who have learned the signal without ever being told, close their books and go home.

Footnotes[1] and references[23] appear in brackets; e-mail addresses, hash-tags (#weekend), and @mentions appear where you'd least expect them. Isn't it odd? Wasn't it always?
"""

# ---------------------------------------------------------------------------------------------
SOURCE_CODE = """\
// ---- C++ -----------------------------------------------------------------
#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace demo {

template <typename T>
[[nodiscard]] constexpr T clamp_add(T a, T b, T lo, T hi) noexcept {
    const T s = a + b;
    return s < lo ? lo : (s > hi ? hi : s);
}

struct Span { std::size_t begin = 0, end = 0; };

std::vector<Span> split_words(std::string_view text) {
    std::vector<Span> out;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && text[i] == ' ') ++i;   // skip blanks
        const std::size_t j = i;
        while (i < text.size() && text[i] != ' ') ++i;
        if (j != i) out.push_back({j, i});
    }
    return out;
}

static_assert(clamp_add<int>(2, 3, 0, 4) == 4, "clamp");
auto lambda = [&, count = 0u](auto&& x) mutable -> decltype(auto) { return ++count, std::forward<decltype(x)>(x); };

}  // namespace demo

# ---- Python ----------------------------------------------------------------
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Reading:
    sensor: str
    value: float
    unit: str = "degC"

    def __str__(self) -> str:
        return f"{self.sensor}={self.value:.2f}{self.unit}"


def summarize(readings: list[Reading], *, threshold: float = 30.0) -> dict[str, float]:
    \"\"\"Average per sensor, ignoring values above `threshold`.\"\"\"
    acc: dict[str, list[float]] = {}
    for r in readings:
        if r.value > threshold:
            continue  # outlier
        acc.setdefault(r.sensor, []).append(r.value)
    return {k: sum(v) / len(v) for k, v in sorted(acc.items()) if v}


if __name__ == "__main__":
    data = [Reading("t1", 21.5), Reading("t1", 22.25), Reading("t2", 99.0), Reading('t2', 19.75)]
    print(summarize(data))  # {'t1': 21.875, 't2': 19.75}
    squares = list(map(lambda n: n ** 2, range(10)))
    assert squares[-1] == 81 and not squares[0]

// ---- JavaScript ------------------------------------------------------------
'use strict';
const fetchJson = async (url, { retries = 3, timeoutMs = 5_000 } = {}) => {
  for (let attempt = 1; attempt <= retries; attempt++) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeoutMs);
    try {
      const res = await fetch(url, { signal: ctrl.signal });
      if (res.status !== 200) throw new Error(`HTTP ${res.status} for ${url}`);
      return await res.json();
    } catch (err) {
      console.warn(`attempt ${attempt}/${retries} failed:`, err?.message ?? err);
    } finally {
      clearTimeout(timer);
    }
  }
  return null;
};
const isHex = (s) => /^[0-9a-f]+$/i.test(s) && s.length % 2 === 0;
export default { fetchJson, isHex };

# ---- shell -------------------------------------------------------------------
#!/usr/bin/env bash
set -euo pipefail
shopt -s nullglob
for f in "${@:-./*.log}"; do
\tlines=$(wc -l < "$f")
\tif (( lines > 1000 )); then
\t\techo "rotating $f ($lines lines)" >&2
\t\tgzip -9 -- "$f" && : > "$f"
\tfi
done
cat <<'EOF' | sed -e 's/^ *//' -e "s/\\$HOME/~/g" | tr '[:lower:]' '[:upper:]'
    done at $(date +%Y-%m-%dT%H:%M:%S)
EOF
[[ -n ${DEBUG-} ]] && printf '%s\\n' "debug: $((2 ** 10)) bytes" || true

# ---- Makefile (recipes indented with tabs) -----------------------------------
CXXFLAGS ?= -O2 -Wall -Wextra -std=c++20
objs := $(patsubst %.cpp,build/%.o,$(wildcard src/*.cpp))

build/%.o: %.cpp | build
\t@mkdir -p $(dir $@)
\t$(CXX) $(CXXFLAGS) -MMD -c $< -o $@

.PHONY: clean
clean:
\trm -rf build/ *.d

// ---- Go (tab indentation, mixed with aligned comments) ------------------------
func maxInt(xs ...int) (m int, ok bool) {
\tfor i, x := range xs {
\t\tif i == 0 || x > m {\t// first or larger
\t\t\tm, ok = x, true
\t\t}
\t}
\treturn
}

// ---- JSON ----------------------------------------------------------------------
{
  "name": "gpt.cpp-fixture",
  "version": "0.0.1",
  "tags": ["bpe", "tokenizer", "caf\\u00e9", "\\ud83d\\ude00"],
  "limits": {"max_tokens": 1024, "temperature": 0.7, "top_p": 1e-3, "seed": -1, "stop": null},
  "nested": [[1, 2, [3, [4, [5]]]], {"a": {"b": {"c": {}}}}, true, false],
  "path": "C:\\\\Users\\\\me\\\\file.txt"
}

-- ---- SQL ------------------------------------------------------------------------
SELECT u.id, COUNT(*) AS n_orders, SUM(o.total_cents) / 100.0 AS total
FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.created_at >= '2024-01-01'
WHERE u.email NOT LIKE '%@example.com' GROUP BY u.id HAVING COUNT(*) > 2 ORDER BY total DESC LIMIT 10;

// ---- a very long line ------------------------------------------------------------
static const uint16_t kTable[] = {""" + ", ".join(f"0x{(i * 2654435761) & 0xFFFF:04x}" for i in range(160)) + """};

// ---- lines with trailing blanks and a mixed tab/space indent ----------------------
if (x) {    \n  \t  y = 1;\t\n    \t}  \n\n"""

# Windows batch file with CRLF line endings, appended as its own block.
SOURCE_CODE += "\r\n".join([
    "REM ---- batch file (CRLF) ----",
    "@echo off",
    "setlocal EnableDelayedExpansion",
    "for %%f in (*.txt) do (",
    "    echo Processing %%f",
    "    set /a count+=1",
    ")",
    "echo Done: !count! files",
    "",
])


# ---------------------------------------------------------------------------------------------
CJK = """\
한국어
안녕하세요. 오늘 날씨가 정말 좋네요! 우리는 내일 오전 9시에 서울역에서 만나기로 했습니다.
가격은 12,000원이고, 할인하면 9,600원이에요. 한국어 문장 사이에 English words와 숫자 2024년이 섞여 있습니다.
"진짜요?" 그녀가 물었다. '아마도...' 그는 대답하지 않았다. 자모만: ㄱㄴㄷㄹ ㅏㅑㅓㅕ, ㅋㅋㅋㅋ ㅎㅎ.
도서관은 월요일부터 금요일까지 열려 있고, 주말에는 문을 닫습니다(공휴일 제외).

简体中文
今天下午三点，我们在图书馆二楼讨论了新的计划。小明说：“这个问题比我们想象的要复杂得多。”
大家都同意先做一个简单的原型，然后再慢慢改进。预算大约是３５０００元，时间是两个月。
他买了3斤苹果、2瓶牛奶和一本《数据结构》。你知道吗？这家店从1998年开始营业！
数字：一、二、三、十、百、千、万、亿、〇；日期：二〇二四年十二月三十一日。

繁體中文
這座城市的夜景非常漂亮，尤其是從山頂往下看的時候。
請問您需要幾張票？我們還有三張，每張新臺幣四百五十元。
「學而時習之」這句話，老師在黑板上寫了三遍；同學們都抄在筆記本裡。
電腦、網際網路、軟體與硬體——這些詞在臺灣與大陸的說法不太一樣。

日本語
東京駅から新幹線に乗って、京都まで約２時間１５分です。コンビニでおにぎりとお茶を買いました。
「すみません、このバスは空港に行きますか？」と聞きました。運転手さんは『はい、行きますよ』と答えました。
ひらがなとカタカナ、そして漢字が混ざっています。プログラミング言語のPythonとC++を勉強中です。
半角カナ：ｶﾀｶﾅ ﾃｽﾄ ｰ ﾞﾟ。長音：コーヒー、ラーメン、スーパー。踊り字：時々、人々、いすゞ、こゝろ。
価格：１，２８０円（税込）　第３章　２０２４年１２月３１日（火）午後３時〜５時

全角 / full-width
ＡＢＣＤＥＦＧ ａｂｃｄｅｆｇ ０１２３４５６７８９ ！＂＃＄％＆＇（）＊＋，－．／：；＜＝＞？＠［＼］＾＿｀｛｜｝～
、。・「」『』【】〈〉《》〔〕…‥―　〜〃々〆〇
Ｈｅｌｌｏ，　Ｗｏｒｌｄ！　ｉｔ＇ｓ　１２３．
CJK compatibility and others: ㈱ ㍻ ㎞ ㎏ ㏄ ㋀ ㊤ 丨丿乀 ⺀⺁ ㄅㄆㄇㄈ ꀀꀁ
"""

# ---------------------------------------------------------------------------------------------
ZWJ, VS16, VS15, KEYCAP = "\u200d", "\ufe0f", "\ufe0e", "\u20e3"
TONES = ["\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF"]


def flag(cc):
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in cc)


def tag_flag(code):  # subdivision flags: black flag + tag letters + cancel tag
    return "\U0001F3F4" + "".join(chr(0xE0000 + ord(c)) for c in code) + "\U000E007F"


family = ZWJ.join(["\U0001F468", "\U0001F469", "\U0001F467", "\U0001F466"])
couple = "\U0001F469" + ZWJ + "\u2764" + VS16 + ZWJ + "\U0001F468"
scientist = "\U0001F469" + ZWJ + "\U0001F52C"
astronaut = "\U0001F468" + TONES[0] + ZWJ + "\U0001F680"
coder = "\U0001F9D1" + TONES[4] + ZWJ + "\U0001F4BB"
rainbow = "\U0001F3F3" + VS16 + ZWJ + "\U0001F308"
pirate = "\U0001F3F4" + ZWJ + "\u2620" + VS16
handshake = "\U0001F9D1" + ZWJ + "\U0001F91D" + ZWJ + "\U0001F9D1"
service_dog = "\U0001F415" + ZWJ + "\U0001F9BA"
EMOJI = "\n".join([
    "single: \U0001F600 \U0001F602 \U0001F972 \U0001F680 \U0001F525 \u2764 \u2764\ufe0f \u2705 \u2b50 \U0001F40D \U0001F980 \U0001F355 \u2615 \U0001FAE0 \U0001F9CB",
    "skin tones: " + " ".join("\U0001F44D" + t for t in TONES) + " \U0001F44B" + TONES[2] + " " + "".join("\u270C" + t for t in TONES),
    "zwj: " + " ".join([family, couple, scientist, astronaut, coder, rainbow, pirate, handshake, service_dog]),
    "zwj glued: " + family + family + scientist + coder + "abc" + family,
    "flags: " + " ".join(flag(c) for c in ["US", "JP", "KR", "DE", "BR", "UA", "EU", "IN", "ZA"]),
    "flags run: " + "".join(flag(c) for c in ["FR", "IT", "ES", "PT", "NL", "BE"]) + " odd: " + flag("F") + " " + flag("FRA"),
    "subdivisions: " + tag_flag("gbsct") + " " + tag_flag("gbwls") + " " + tag_flag("gbeng"),
    "keycaps: " + " ".join(c + VS16 + KEYCAP for c in "0123456789#*") + " bare: 1" + KEYCAP + " #" + KEYCAP,
    "variation selectors: \u263a" + VS15 + " \u263a" + VS16 + " \u2708" + VS15 + " \u2708" + VS16 + " \u00a9" + VS16 + " \u2122" + VS16 + " \u2194" + VS16 + " A" + VS16,
    "glued: hello\U0001F600world abc\U0001F525123 2024\U0001F389 \U0001F680launch it's\U0001F525 \U0001F600\U0001F600\U0001F600\U0001F600\U0001F600 "
    + flag("US") * 3 + " x" + TONES[0] + " " + TONES[1],
    "in text: We shipped it \U0001F389\U0001F389 - thanks all! \U0001F64F" + TONES[3] + " Tests: 42 passed \u2705, 0 failed \u274C. Weather: \u2600\ufe0f\u2192\U0001F327\ufe0f\u2192\u26c8\ufe0f.",
    "cjk mix: \u4eca\u65e5\u306f\u6674\u308c\u2600\ufe0f \uc88b\uc544\uc694\U0001F44D \u5f88\u597d\U0001F600",
    "hearts: \u2764\ufe0f\U0001F9E1\U0001F49B\U0001F49A\U0001F499\U0001F49C\U0001F5A4\U0001F90D\U0001F90E\u2763\ufe0f\U0001F495\U0001F49E",
    "faces:  " + "".join(chr(c) for c in range(0x1F600, 0x1F650)),
    "animals: " + " ".join(chr(c) for c in range(0x1F400, 0x1F43F)),
    "symbols: \u2600\u2601\u2602\u2603\u2604\u2614\u2615\u2648\u2649\u264a\u267b\u267f\u2693\u26a1\u26bd\u26be\u26c4\u26ce\u26d4\u26ea\u26f2\u26f3\u26f5\u26fa\u26fd",
    "newest-ish: \U0001FAE8 \U0001FAF7" + TONES[1] + " \U0001FA75 \U0001F426" + ZWJ + "\u2B1B \U0001FABF \U0001F642" + ZWJ + "\u2194" + VS16,
    "emoji at end \U0001F44B" + TONES[4] + family,
])
EMOJI = "\U0001F600 starts with an emoji\n" + EMOJI + "\n"

# ---------------------------------------------------------------------------------------------
NFC_WORDS = ("café naïve résumé Ångström São Paulo Zürich jalapeño crème brûlée façade "
             "Việt Nam Phở Ελληνικά ἀρχὴ ὁδός Ñandú Dvořák Škoda Øresund Łódź Māori "
             "한국어 조선말 가나다 Straße Ǆemal ǅemal")
rng = random.Random(1234)
MARKS = [c for r in [(0x300, 0x370), (0x483, 0x48A), (0x1AB0, 0x1ACF), (0x1DC0, 0x1E00), (0x20D0, 0x20F1), (0xFE20, 0xFE30)]
         for c in range(*r)]


def zalgo(word, k):
    return "".join(ch + "".join(chr(rng.choice(MARKS)) for _ in range(rng.randint(0, k))) for ch in word)


COMBINING = "\n".join([
    "NFC: " + unicodedata.normalize("NFC", NFC_WORDS),
    "NFD: " + unicodedata.normalize("NFD", NFC_WORDS),
    "NFKC: " + unicodedata.normalize("NFKC", "ﬁ ﬂ ﬃ ² ½ Ⅸ ㍻ ｶﾀｶﾅ ＡＢＣ ℌ ℵ ǅ"),
    "NFKD: " + unicodedata.normalize("NFKD", "ﬁ ﬂ ﬃ ² ½ Ⅸ ㍻ ｶﾀｶﾅ ＡＢＣ ℌ ℵ ǅ"),
    "Vietnamese NFC: " + unicodedata.normalize("NFC", "Tiếng Việt có sáu thanh điệu; người học thường thấy khó."),
    "Vietnamese NFD: " + unicodedata.normalize("NFD", "Tiếng Việt có sáu thanh điệu; người học thường thấy khó."),
    "stacked: e\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308 a\u0323\u0302\u0301 o\u031b\u0300\u0323 x\u20dd 1\u20e3 A\u20e0 \u0301\u0301 start",
    "\u0301 line starts with a combining mark; after space \u0300\u0301 and after digits 12\u0303 and punctuation !\u0308 ?\u0327",
    "zalgo: " + " ".join(zalgo(w, 6) for w in "the quick brown fox jumps over the lazy dog".split()),
    "zalgo heavy: " + zalgo("HELLO", 25) + " " + zalgo("12345", 10),
    "CGJ and friends: a\u034fb \u0065\u034f\u0301 ZWNJ: \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 ZWJ: \u0915\u094d\u200d\u0937",
    "Devanagari: नमस्ते दुनिया। मेरा नाम अनु है और मैं दिल्ली में रहती हूँ। क्षत्रिय, ज्ञान, श्री, द्वार, हिन्दी।",
    "Devanagari digits inline: आज १२ तारीख है, और कल 13 होगी॥",
    "Bengali: আমি বাংলায় গান গাই। Tamil: வணக்கம், நீங்கள் எப்படி இருக்கிறீர்கள்? Gurmukhi: ਸਤ ਸ੍ਰੀ ਅਕਾਲ",
    "Arabic with harakat: مَرْحَبًا بِكُمْ فِي الْمَدْرَسَةِ. اَلْكِتَابُ عَلَى الطَّاوِلَةِ.",
    "Arabic plain: مرحبا بكم في المدرسة. الكتاب على الطاولة. tatweel: كـــتـــاب, digits ١٢٣ and 123.",
    "Persian: این یک جملهٔ آزمایشی است؛ آیا درست کار می‌کند؟ Urdu: یہ ایک مثال ہے۔",
    "Hebrew with points: שָׁלוֹם עֲלֵיכֶם, סֵפֶר, מַיִם, יְרוּשָׁלַיִם.",
    "Hebrew plain: שלום עולם, ספר, מים, ירושלים. mixed RTL/LTR: הגרסה 2.5 של gpt.cpp יצאה.",
    "Thai: สวัสดีครับ วันนี้อากาศดีมาก ผมชอบกินข้าวผัดกุ้ง ๑๒๓",
    "Lao: ສະບາຍດີ Khmer: សួស្តី​ពិភពលោក Myanmar: မင်္ဂလာပါ Tibetan: བཀྲ་ཤིས་བདེ་ལེགས། Sinhala: ආයුබෝවන්",
    "Hangul NFD (conjoining jamo): " + unicodedata.normalize("NFD", "안녕하세요 세계"),
    "Greek polytonic NFD: " + unicodedata.normalize("NFD", "Ἐν ἀρχῇ ἦν ὁ λόγος"),
    "Cyrillic with stress marks: за\u0301мок замо\u0301к; ё vs е\u0308; й vs и\u0306",
    "",
])

# ---------------------------------------------------------------------------------------------
def whitespace_text():
    out = ["  \t \n  leading whitespace above and on this line\n"]
    for n in list(range(1, 21)) + [31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257]:
        sp = " " * n
        out.append(f"[{n}]{sp}word{sp}.{sp}7{sp}'s{sp}\n{sp}\n{sp}start\nend{sp}\n\t{sp}x\n")
    for n in range(1, 12):
        out.append("\t" * n + "tab" + "\t" * n + "|" + "\t" * n + "\n")
    out.append("mixed: \t \t word\t  word  \tword \t\n\t \t\n \t \t \n")
    out.append("newline runs:\n\n\nthree\n\n\n\n\n\nsix\n" + "\n" * 20 + "twenty\n")
    out.append("space-newline combos: a \nb  \n\nc \n \n d\n  \n  e\n \n\n \n")
    out.append("crlf line\r\ncrlf line with trailing  \r\n\r\n\r\ncrlf blank lines above\r\n")
    out.append("lone cr\rinside\rline\r \r  \r\rdouble\r\r\n\n\r\n\r mixed endings\n\r")
    out.append("crlf before words:\r\nword\r\n  word\r\n\tword\r\n\r\n  \r\n")
    spaces = {"nbsp": "\u00a0", "nel": "\u0085", "ogham": "\u1680", "en_quad": "\u2000", "em_quad": "\u2001",
              "en": "\u2002", "em": "\u2003", "three_per_em": "\u2004", "four_per_em": "\u2005",
              "six_per_em": "\u2006", "figure": "\u2007", "punct": "\u2008", "thin": "\u2009", "hair": "\u200a",
              "line_sep": "\u2028", "para_sep": "\u2029", "narrow_nbsp": "\u202f", "math": "\u205f",
              "ideographic": "\u3000", "vt": "\x0b", "ff": "\x0c"}
    # look-alikes that are NOT White_Space in Unicode (but some are str.isspace() in Python)
    not_spaces = {"zwsp": "\u200b", "mvs": "\u180e", "wj": "\u2060", "bom": "\ufeff", "fs": "\x1c",
                  "gs": "\x1d", "rs": "\x1e", "us": "\x1f", "braille_blank": "\u2800", "hangul_filler": "\u3164"}
    for name, s in list(spaces.items()) + list(not_spaces.items()):
        out.append(f"{name}:{s}word{s}{s}word {s}word{s} word{s * 3}word{s}.{s}1{s}\n{s}\n{s * 2}\n")
    out.append("all spaces in a row:" + "".join(spaces.values()) + "x" + "".join(spaces.values()) + "\n")
    out.append("ideographic: \u3000\u3000\u3000テスト\u3000です。\u3000\n")
    out.append("nbsp before punctuation: Bonjour\u00a0! Vraiment\u00a0? 10\u00a0000\u00a0\u20ac \u00ab\u00a0oui\u00a0\u00bb\n")
    out.append("whitespace then specials: a  ! b  ? c  \u00bf d  @ e   $ f  \U0001F600 g  \u4e2d h  \u0301\n")
    out.append("ends with a whitespace run:\n  \t  \n\n \t\t   ")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
def digits_text():
    out = []
    out.append("2**1000 = " + str(2 ** 1000) + "\n")
    out.append("150! = " + str(math.factorial(150)) + "\n")
    out.append("repeated: " + "1234567890" * 50 + "\n")
    out.append("zeros: 1" + "0" * 300 + " and " + "9" * 200 + "\n")
    out.append("pi-ish: " + str(math.isqrt(2 * 10 ** 400)) + "\n")
    out.append("counting: " + " ".join(str(i) for i in range(0, 201)) + "\n")
    out.append("csv: " + ",".join(str(i * i) for i in range(100)) + "\n")
    out.append("""\
separators: 1,234,567 1.234.567,89 1 234 567 1'234'567 1_000_000 12\u202f345\u202f678 12\u00a0345 1\u2009000 1\u066c234\u066b56
decimals: 3.14159265358979 0.000001 .5 5. -0.0 +42 -17 \u221217 \u201217 1e10 6.022e+23 1.6E-19 1e-7 -2.5e-3 NaN inf -inf
bases: 0x1F 0xDEADBEEF 0b1010_1010 0o777 017 1_000.000_1 0.1+0.2=0.30000000000000004
dates/times/versions: 2024-12-31T23:59:59Z 23:59:59.999 1999/12/31 v1.2.3 2.0.0-rc.1 192.168.0.1 ::1 10:30 2:3 1:1000
units: 5km 10kg 3.5GHz 16GB 1080p 4K 60fps 120Hz 9mm 2x 3-4 10-15% 50% 100\u00b0C 98.6\u00b0F 45\u00b0 30\u2032 15\u2033
mixed: abc123def 123abc A1B2C3 COVID-19 B2B 1st 2nd 3rd 4th 11th 21st 22nd 23rd 101st R2-D2 C-3PO x86_64 i18n l10n
spaced:  1 2  3   4    5     6      7       8 9   10    100     1000
Arabic-Indic: \u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669 \u0661\u0662\u0663\u066b\u0664\u0665
Extended Arabic-Indic (Persian/Urdu): \u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f8\u06f9
Devanagari: \u0966\u0967\u0968\u0969\u096a\u096b\u096c\u096d\u096e\u096f \u0967\u0968\u0969\u096a\u096b
Bengali: \u09e6\u09e7\u09e8\u09e9\u09ea\u09eb\u09ec\u09ed\u09ee\u09ef Thai: \u0e50\u0e51\u0e52\u0e53\u0e54\u0e55\u0e56\u0e57\u0e58\u0e59
Tamil: \u0be6\u0be7\u0be8\u0be9\u0bea\u0bf0\u0bf1\u0bf2 Khmer: \u17e0\u17e1\u17e2\u17e3 Myanmar: \u1040\u1041\u1042 Mongolian: \u1810\u1811\u1812
Tibetan: \u0f20\u0f21\u0f22\u0f2a\u0f33 Lao: \u0ed0\u0ed1\u0ed2 NKo: \u07c0\u07c1\u07c2 Ethiopic: \u1369\u136a\u1372\u137c
full-width: \uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19 \uff11\uff12\uff13\uff0c\uff14\uff15\uff16\uff0e\uff17
math digits: \U0001d7ce\U0001d7cf\U0001d7d0 \U0001d7d8\U0001d7d9\U0001d7da \U0001d7ec\U0001d7ed\U0001d7ee \U0001d7f6\U0001d7f7\U0001d7f8\U0001d7ff
astral digits: \U000104a0\U000104a1\U000104a2 (Osmanya) \U00011066\U00011067 (Brahmi) \U0001e950\U0001e951 (Adlam) \U00010107\U00010108 (Aegean)
superscripts: x\u00b2 y\u00b3 \u00b9\u2070\u2074\u2075\u2076\u2077\u2078\u2079 E=mc\u00b2 10\u207b\u00b3 2\u207f
subscripts: H\u2082O CO\u2082 C\u2086H\u2081\u2082O\u2086 x\u2080 x\u2081 x\u2099
roman numerals: \u2160 \u2161 \u2162 \u2163 \u2164 \u216b \u216c\u216d\u216e\u216f \u2170\u2171\u2172 \u2180\u2181\u2182 \u2188 Chapter \u2167, Louis XIV, MMXXIV
fractions: \u00bd \u2153 \u2154 \u00bc \u00be \u215b \u215e \u2150 \u2189 1\u00bd 2\u00be cups 1\u20442 3\u20444 7/8 22/7
circled etc.: \u2460 \u2461 \u2473 \u3251 \u32bf \u24ea \u2776 \u2474 \u2488 \u278a \U0001f100 \U0001f10a
CJK numbers: \u3007\u4e00\u4e8c\u4e09 \u3021\u3022\u3023 (Hangzhou) \u5344\u5345 \u58f1\u5f10\u53c2
money: $0.99 \u20ac1.234,56 \u00a3100 \u00a5500 \u20a91,000 \u20b9 2,50,000 \u20bd99 \u20bf0.00042 12\u00a2
phone & ids: +44 20 7946 0958 (555) 010-9999 4111-1111-1111-1111 978-3-16-148410-0
""")
    out.append("negatives: " + " ".join(str(-(i ** 3)) for i in range(1, 40)) + "\n")
    out.append("floats: " + " ".join(repr(1 / i) for i in range(1, 30)) + "\n")
    out.append("no newline at end: 42")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
def contractions_text():
    suffixes = ["s", "t", "re", "ve", "m", "ll", "d"]
    variants = []
    for suf in suffixes:
        for mask in range(1 << len(suf)):
            variants.append("".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(suf)))
    out = ["all case variants: " + " ".join("it'" + v for v in variants) + "\n"]
    contexts = [
        ("after letter", "x'{}"), ("after upper", "X'{}"), ("after digit", "9'{}"), ("after space", " '{}"),
        ("after two spaces", "  '{}"), ("after punct", ".'{}"), ("after quote", "\"'{}"), ("doubled", "''{}"),
        ("tripled", "'''{}"), ("glued word", "'{}abc"), ("repeated", "'{}'{}"), ("curly", "it\u2019{}"),
        ("left curly", "\u2018{}"), ("modifier apostrophe", "it\u02bc{}"), ("fullwidth", "it\uff07{}"),
        ("backtick", "it`{}"), ("acute", "it\u00b4{}"), ("after emoji", "\U0001F600'{}"), ("after cjk", "\u4e2d'{}"),
        ("before digit", "'{}9"), ("before space", "'{} x"), ("after nbsp", "\u00a0'{}"), ("after tab", "\t'{}"),
    ]
    for label, fmt in contexts:
        out.append(f"{label}: " + " ".join(fmt.format(v, v) for v in variants) + "\n")
    for v in variants:
        out.append(f"'{v} at line start\n")
        out.append(f"line ends with '{v}\n")
    out.append("""\
sentences: She'd've known if they'd told her we're here. I'm sure you'll see it's what we'd've done.
Y'all can't say y'all'd've done better. It's 5 o'clock somewhere; the '90s weren't the 1990's.
Rock 'n' roll. 'Tis the season; 'twas the night. Ma'am, the O'Briens' dog's bone is in Ross' yard.
SHOUTING: I'M SURE THEY'RE RIGHT, BUT WE'LL SEE. WE'VE SEEN IT. HE'D KNOW. ISN'T IT? DON'T!
Mixed: I'M it'S We'Re they'VE you'Ll she'D it'S'S. don'T Don'T DON't.
apostrophes alone: ' '' ''' ' ' 'x' 'abc' '1' ' s ' t 'sss 'tt 'rere 'veve 'mm 'llll 'dd
possessives: James's Jesus' the boss's the bosses' 2020's A's B's #'s ?'ll !'d ,'re ;'ve :'m
non-contractions: 'st 'te 'r 'v 'l 'em 'n 'cause 'bout 'round o'er e'er ne'er '
a quote at the very end of a line '
'
''
'''s
""")
    out.append("ends with an apostrophe '")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
PUNCTUATION = """\
Runs: !!!!!!!!!! ?!?!?!?! ...... ............................................ -------- ======== ~~~~ *** ### ##
((())) [[[]]] {{{}}} <<<>>> ////\\\\\\\\ |||| ^^^^ %%%% $$$$ @@@@ &&&& ;;;; :::: ,,,, ____ ```` '''''' \"\"\"\"\"\" +-+-+-
------------------------------------------------------------------------------------------------------------------------
________________________________________________________________________________________________
************************************************************************************************
================================================================================================

+--------+--------+---------+
| Name   | Value  | Delta % |
+========+========+=========+
| alpha  |  0.25  |  +1.5   |
| beta   | -3.00  |  -0.2   |
+--------+--------+---------+

   /\\_/\\
  ( o.o )
   > ^ <     <-- a cat
 ___________
< hi there! >
 -----------
        \\   ^__^
         \\  (oo)\\_______
            (__)\\       )\\/\\
                ||----w |
                ||     ||

# Heading 1
## Heading 2 ##
### *Emphasis*, **bold**, ***both***, _under_, __dunder__, ~~strike~~, `inline code`
> quoted line
>> nested quote
- [ ] open task
- [x] done task
1. first
2) second
| col A | col B |
|:------|------:|
| `a|b` | **c** |
[link text](https://example.com/path/to/page?query=1&other=two#section-3) and ![alt](./img/cat.png "title")
<https://autolink.example.org> <!-- html comment --> <br/> &amp; &lt; &gt; &#x1F600; &nbsp;
```python
print("fenced")
```

URLs: https://www.example.org/a/b/c?x=1&y=%20z#top http://localhost:8080/ ftp://files.example.net/pub/file.tar.gz
file:///C:/Users/Public/Documents/report%20(final).pdf http://[2001:db8::1]:443/index.html?q=a+b
https://user:pa55w0rd@example.com:8443/p;param?q=1#frag mailto:someone@example.com?subject=Hi%21 ws://echo.example:9000
Emails: first.last+tag@sub.example.co.uk, "quoted name"@example.com, x@y.z, admin@[192.168.1.1], UPPER.CASE@EXAMPLE.COM

Regex: ^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)$ \\d{3}-\\d{4} (?<=\\s)\\w+(?!\\S) [^\\s\\p{L}\\p{N}]++ \\b(\\w+)\\s+\\1\\b
Shell-ish: a && b || c; d | e > f 2>&1 <g >>h $(i) `j` ${k:-l} !$ !! ~/.config/*.{json,yml} **/*.rs

Math: \u2200x\u2208\u211d: x\u00b2\u22650, \u2211_{i=1}^{n} i = n(n+1)/2, \u222b\u2080^\u221e e^{-x} dx = 1, \u2264 \u2265 \u2260 \u2248 \u2261 \u221e \u2202 \u2207 \u221a \u221d \u2282 \u2286 \u222a \u2229 \u2227 \u2228 \u00ac \u21d2 \u21d4 \u2192 \u2190 \u2194 \u00d7 \u00f7 \u00b1 \u2213 \u00b7 \u2218 \u2297 \u2295 \u22a5 \u2225 \u2220 \u2234 \u2235
LaTeX: \\frac{a}{b} + \\sqrt[3]{x^2} - \\sum_{k=0}^{\\infty} \\frac{(-1)^k}{2k+1} = \\frac{\\pi}{4}; \\begin{align*} f(x) &= \\alpha x + \\beta \\\\ \\end{align*}
Typographic: \u2014 \u2013 \u2026 \u00ab \u00bb \u201e \u201c \u201d \u2018 \u2019 \u2039 \u203a \u2022 \u00b7 \u00a7 \u00b6 \u2020 \u2021 \u00a9 \u00ae \u2122 \u00b0 \u2032 \u2033 \u2030 \u203d \u2e18 \u00a1 \u00bf
Currency: $ \u20ac \u00a3 \u00a5 \u20a9 \u20b9 \u20bd \u20bf \u00a2 \u20ba \u20b4 \u20aa \u0e3f
Arrows & boxes: \u2190\u2191\u2192\u2193\u2194\u2195 \u21e6\u21e7\u21e8 \u2500\u2502\u250c\u2510\u2514\u2518\u251c\u2524\u252c\u2534\u253c \u2550\u2551\u2554\u2557 \u2588\u2593\u2592\u2591 \u25a0\u25a1\u25b2\u25bc\u25c6\u25cb\u25cf \u2605\u2606 \u2660\u2663\u2665\u2666 \u266a\u266b

Spacing around punctuation:  , . ; : ! ?  a , b  word !  ( x )    ---    ...  \u2014 dash \u2014  "  quoted  "  ' single '
 .leading dot  ,leading comma  !!!  ???   ...
trailing punctuation runs!!!   ???   ...   ---\t***\t
Punctuation + newline:
.
,
!?
...
Code-ish: a->b a=>b a::b a<=>b a!==b a?.b a??b a**=b a>>>=b i++ --j #[derive(Debug)] @Override /* c */ // d -- e {{ f }} {% g %}
Programming tokens: ){ }; ]); }), ()); [[]]; <T>(); ::<>; =>{}; ?: !! ?? ... :=  <- -> |> <| >>= =<< <*> <$>
"""

# ---------------------------------------------------------------------------------------------
def long_words_text():
    r = random.Random(42)
    syll = ["ka", "lo", "mi", "ren", "tha", "quo", "vex", "sul", "pri", "dor", "ung", "zle", "fi", "nat", "ion", "ex"]
    word = ""
    while len(word) < 1200:
        word += r.choice(syll)
    blob = bytes(r.getrandbits(8) for _ in range(3000))
    b64 = base64.b64encode(blob).decode()
    hexes = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(64))
    camel = "".join(r.choice(syll).capitalize() + r.choice(syll) for _ in range(400))
    letters = "".join(chr(r.randrange(97, 123)) for _ in range(20000))
    out = [
        "A 1200-letter word: " + word + "\n",
        "German-style compound: Unterwasserfotografiekursteilnehmerbescheinigungsformularausgabestelle\n",
        "5000 a: " + "a" * 5000 + "\n",
        " " + "Z" * 5000 + "\n",
        "3000 e-acute: " + "\u00e9" * 3000 + "\n",
        "2000 CJK: " + "\u4e2d" * 2000 + "\n",
        "1000 emoji: " + "\U0001F600" * 1000 + "\n",
        "alternating: " + "ab" * 2500 + " " + "aab" * 1000 + "\n",
        "base64 wrapped:\n" + "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + "\n",
        "base64 one line: " + b64 + "\n",
        "hex: " + hexes + "\n",
        "HEX: " + hexes.upper()[:1000] + "\n",
        "CamelCase: " + camel + "\n",
        "snake_case: " + "_".join(r.choice(syll) for _ in range(1500)) + "\n",
        "path: /" + "/".join(r.choice(syll) + str(r.randrange(100)) for _ in range(500)) + "\n",
        letters + "\n",
        "20k letters above, no trailing newline after this word: " + "x" * 300,
    ]
    return "".join(out)


# ---------------------------------------------------------------------------------------------
SPECIAL = """\
<|endoftext|>The file starts with the special token.
Document one ends here.<|endoftext|>Document two begins right after it.
Spaces around: before <|endoftext|> after, and two spaces  <|endoftext|>  here.
Doubled: <|endoftext|><|endoftext|> and tripled: <|endoftext|><|endoftext|><|endoftext|>
Glued: word<|endoftext|>word 123<|endoftext|>456 it's<|endoftext|>'s <|endoftext|>'ll
Partial forms: <|endoftext| |endoftext|> <|endoftext <endoftext|> <|endoftext|>> <<|endoftext|> <|endoftext|<|endoftext|>
Case and spacing variants: <|ENDOFTEXT|> <|EndOfText|> <|endoftext |> <| endoftext|> < |endoftext|> <||endoftext||>
Other special-looking strings: <|endofprompt|> <|startoftext|> <|fim_prefix|> <|im_start|>user<|im_end|> <|pad|>
Full-width look-alike: \uff1c\uff5cendoftext\uff5c\uff1e and with zero-width space: <|endof\u200btext|>
In code: if tok == "<|endoftext|>": break  # sentinel
Newlines around:
<|endoftext|>
  <|endoftext|>
<|endoftext|>\t
trailing whitespace before the token   <|endoftext|>
\n\n<|endoftext|>\n\n
JSON: {"eos": "<|endoftext|>", "bos": "<|endoftext|>"}
Emoji glued: \U0001F600<|endoftext|>\U0001F600 CJK glued: \u6587\u672c<|endoftext|>\u7ed3\u675f
Last line ends with the token<|endoftext|>"""


# ---------------------------------------------------------------------------------------------
def long_runs_text():
    """Single pre-tokens of tens of thousands of bytes: the merge loop for long pieces (bpe.cpp's
    merge_large) against tiktoken, on the inputs where a slow merge loop shows (one letter, no
    spaces). Each run length is odd or prime, so the merges leave a tail."""
    r = random.Random(7)
    out = [
        "a" * 100003 + "\n",
        " " + "Z" * 10007 + "\n",
        "ab" * 5003 + "\n",
        "aab" * 3001 + "\n",
        "\u00e9" * 5003 + "\n",
        "\u4e2d" * 3001 + "\n",
        "1" * 10007 + "\n",
        "!" * 10007 + "\n",
        "".join(chr(r.randrange(97, 123)) for _ in range(20011)) + "\n",
        "x" * 20011,
    ]
    return "".join(out)


# ---------------------------------------------------------------------------------------------
def mixed_misc_text():
    def span(lo, hi):
        return "".join(chr(c) for c in range(lo, hi))

    out = [
        "\ufeffBOM at the start of this file, and here\ufeffin the middle.\n",
        "C0 controls: " + "|".join(chr(c) for c in range(1, 32) if c not in (10, 13)) + "|\x7f|\n",
        "C0 glued: a\x01b\x02c\x1bd[0m\x1b[31mred\x1b[0m \x07bell\x08\x08back\n",
        "C1 controls (U+0080..U+009F): " + span(0x80, 0xA0) + "\n",
        "Latin-1: " + span(0xA0, 0x100) + "\n",
        "binary-ish ASCII: " + "".join(chr(33 + (i * 37) % 94) for i in range(300)) + "\n",
        "math alnum bold: \U0001d400\U0001d401\U0001d402 \U0001d41a\U0001d41b\U0001d41c italic: \U0001d434\U0001d435 \U0001d44e\U0001d44f script: \U0001d49c\U0001d4b6 fraktur: \U0001d504\U0001d51e double-struck: \U0001d538\U0001d552 \u2102\u2115\u211a\u211d\u2124 mono: \U0001d670\U0001d68a\n",
        "math alnum sentence: \U0001d413\U0001d421\U0001d41e \U0001d42a\U0001d42e\U0001d422\U0001d41c\U0001d424 \U0001d41b\U0001d42b\U0001d428\U0001d430\U0001d427 \U0001d41f\U0001d428\U0001d431 123\n",
        "Greek: \u0391\u03b8\u03ae\u03bd\u03b1, \u03ba\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1! \u03c3\u03c2\u03a3 Cyrillic: \u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0401\u0436 \u0406\u0457 \u040e\u045e \u0490\u0491\n",
        "Armenian: \u0532\u0561\u0580\u0587 \u0561\u0577\u056d\u0561\u0580\u0570 Georgian: \u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0 Ethiopic: \u1230\u120b\u121d Cherokee: \u13a3\u13cf\u13b3\u13a9 \uab70\uab71\n",
        "Canadian syllabics: \u1403\u14c4\u1483\u144e\u1450\u1466 Runic: \u16a0\u16a2\u16a6\u16a8\u16b1 \u16ee\u16ef\u16f0 Ogham: \u1681\u1682\u1683\u169b\u169c Mongolian: \u182e\u1823\u1829\u182d\u1824\u182f\n",
        "Tifinagh: \u2d30\u2d4e\u2d30\u2d63\u2d49\u2d56 Vai: \ua500\ua501 Yi: \ua000\ua001\ua002 Javanese: \ua984\ua9a4 Balinese: \u1b05\u1b13 Glagolitic: \u2c00\u2c01\u2c30\n",
        "Old Italic: \U00010300\U00010301 Gothic: \U00010330\U00010331\U0001034a Deseret: \U00010400\U00010428 Shavian: \U00010450\U00010451 Cuneiform: \U00012000\U00012001\U00012400 Egyptian: \U00013000\U00013001\n",
        "Linear B: \U00010000\U00010001 Phoenician: \U00010900\U00010901 Brahmi: \U00011003\U00011005\U00011038 Adlam: \U0001e900\U0001e922\U0001e944 Osage: \U000104b0\U000104d8\n",
        "CJK Ext A: \u3400\u3401\u4db5 Ext B: \U00020000\U00020001\U0002a6d6 Ext C-G: \U0002a700\U0002b740\U0002b820\U0002ceb0\U00030000\U00031350 Compat supplement: \U0002f800\U0002f801\n",
        "Titlecase & modifiers: \u01c5\u01c8\u01cb\u01f2 \u1f88\u1f89 \u02b0\u02b1\u02b2\u02c6\u02d0\u02e0 \u3005\u309d\u30fc \uff70 \u0640\n",
        "Letterlike: \u2100\u2101\u2103\u2109\u2116\u2117\u211e\u2120\u2126\u212a\u212b\u212e\u2132\u214e\u2135\u2136\n",
        "Private use: \ue000\ue001\uf8ff \U000f0000\U000f0001\U000ffffd \U00100000\U0010fffd\n",
        "Noncharacters: \ufdd0\ufdd1\ufdef \ufffe\uffff \U0001fffe\U0001ffff \U0010fffe\U0010ffff\n",
        "Specials: \ufff9\ufffa\ufffb \ufffc \ufffd\ufffd replacement-glued\ufffdword\n",
        "Unassigned or recently assigned: \u0378\u0379 \u0530 \u05ff \U0001fb9f \U0002fa20 \U000e0080\n",
        "Format chars: a\u00adb soft-hyphen, \u200e\u200f LRM/RLM, \u202a\u202b\u202c\u202d\u202e embeddings, \u2066\u2067\u2068\u2069 isolates, \u2061\u2062\u2063\u2064 invisible math\n",
        "Tags & variation selectors: a\U000e0001\U000e0041\U000e007f b\U000e0100\U000e01ef c\ufe00\ufe0f \u180b\u180c\u180d\u180f\n",
        "Surrogate-adjacent (valid): \ud7ff\ue000 \ud7a3\ud7b0\ud7fb\n",
        "Halfwidth/fullwidth forms: \uff61\uff62\uff63\uff64\uff65 \uffe0\uffe1\uffe2\uffe3\uffe4\uffe5\uffe6 \uffe8\uffe9\uffea\uffeb\uffec\uffed\uffee\n",
        "Ligatures & presentation forms: \ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06 \ufb1d\ufb1f\ufb2a \ufb50\ufb51 \ufdfa\ufdfb \ufe70\ufe71\ufeff\n",
        "Braille: \u2800\u2801\u2803\u2809\u2819\u2811\u280b\u281b\u2813\u280a \u28ff\n",
        "Dingbats/misc technical: \u2318\u2325\u21e7\u238b\u23ce\u232b\u2326 \u2702\u2704\u2708\u2709 \u2753\u2757 \u27f0\u27ff \u2b00\u2bff\n",
        "Musical: \U0001d11e\U0001d11f\U0001d160\U0001d161 \U0001d165\U0001d16d\U0001d16e (combining) Domino: \U0001f030\U0001f031 Cards: \U0001f0a1\U0001f0b1 Mahjong: \U0001f004\n",
        "Latin extended: \u0100\u0101\u0102 \u0180\u0181\u0182 \u0250\u0251\u0252 \u1e00\u1e01\u1e9e \u2c60\u2c61 \ua720\ua721\ua7ff \uab30\uab31 \U0001df00\U0001df01\n",
        "IPA: \u02c8f\u0254\u028an\u0259\u02ccti\u02d0k \u0283\u0292\u03b8\u00f0\u014b\u0281\n",
        "Script soup: a\u03b1\u0430\u05d0\u0627\u0905\u0e01\u3042\u30a2\u4e00\uac00\u10d0\u0531\u1200\u13a0\u1401\u16a0\u1820\ua000\U00010330\U0001e900!\n",
        "Digits + letters of other scripts glued: \u0661\u0627\u0662\u0628 \u0967\u0915\u0968\u0916 \u0e51\u0e01\u0e52\u0e02 \uff11\uff21\uff12\uff22\n",
    ]
    return "".join(out)


def main():
    write("english_prose.txt", ENGLISH_PROSE)
    write("source_code.txt", SOURCE_CODE)
    write("cjk.txt", CJK)
    write("emoji.txt", EMOJI)
    write("combining.txt", COMBINING)
    write("whitespace.txt", whitespace_text())
    write("digits.txt", digits_text())
    write("contractions.txt", contractions_text())
    write("punctuation.txt", PUNCTUATION)
    write("long_words.txt", long_words_text())
    write("long_runs.txt", long_runs_text())
    write("special.txt", SPECIAL)
    write("mixed_misc.txt", mixed_misc_text())


if __name__ == "__main__":
    main()
