#!/usr/bin/env python3
"""Runs every command the README and docs/ show, so that none of them drifts out of date.

What counts as a command:
  - every command of a ```bash or ```sh block (comment lines dropped; a command spans lines until
    it is complete shell: a backslash continuation, a function definition);
  - every `$ command` line of any other fenced block (a transcript), with its backslash
    continuation lines. When the transcript's output shows `gpt: error: ...` (or `Killed`), the
    command must fail; every other command must succeed.

The commands of one file run in order, in one bash process (so a function, a `cd` or a model made
by one command is there for the next), with `set -o pipefail`, stdin from /dev/null, in a scratch
directory that looks like the repository root: build/ holds links to the binary under test
(build/gpt) and build/tests (outputs written under build/ stay in the scratch), data/ links to the
bundled data, tools/ tests/ bench/ web/ src/ fuzz/ .venv are linked, and `gpt` is on the PATH. The
example input files the docs name as the reader's own (a.txt, hellaswag_val.jsonl, ...) are there
as small stand-ins (STAND_INS below). Every `/tmp/` in a command becomes the scratch's own tmp/
(TMPDIR and HOME point into the scratch too), so runs never collide and nothing is left behind.
Run as root, Open MPI's OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM) are set, as docs/distributed.md says.

Markers, HTML comments in the Markdown, each right before the block it applies to (blank lines
between are allowed; the reason in parentheses is required and printed):
  <!-- doc-check: skip (reason) -->                  skip the whole block
  <!-- doc-check: skip "TEXT" (reason) -->           skip the block's commands that contain TEXT
  <!-- doc-check: replace "OLD" "NEW" (reason) -->   run the block's commands with OLD replaced by
                                                     NEW (e.g. fewer steps); OLD must occur
  <!-- doc-check: before "COMMAND" (reason) -->      run COMMAND first (a file the block assumes)
  <!-- doc-check: after "TEXT" "COMMAND" (reason) --> run COMMAND after each command containing
                                                     TEXT (wait for a server started with &)
  <!-- doc-check: include FILE.md (reason) -->       run that file's commands first, in the same
                                                     shell (a function it defines)
  <!-- doc-check: needs NAME "TEXT" (reason) -->     skip the block's commands that contain TEXT (all
                                                     of them without TEXT) unless this machine has
                                                     NAME: mpi (mpirun, and gpt linked with MPI),
                                                     torch (/usr/bin/python3 imports torch), venv
                                                     (.venv/bin/python imports transformers)
In quoted strings, {port} stands for a free TCP port picked for the file and \\" for a quote.
Links between the files are checked too: a relative link must name a file that exists, and an
#anchor a heading of it. A fenced block with no language whose first line looks like a command, or
an indented code block of commands, is an error: tag it ```bash (or mark it) so that it is checked.

Usage: doc_commands.py --gpt build/gpt [--repo ROOT] [--only README.md docs/x.md ...] [--list]
                       [--keep DIR] [--timeout SECONDS]
Exit status 0 when every command ran as expected; 1 with `FILE:LINE: COMMAND` for each one that
did not, and the tail of its output.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE_LANGS = {"bash", "sh", "shell"}
# Languages whose blocks are never commands (and never transcripts).
NON_COMMAND_LANGS = {"cpp", "c", "c++", "python", "py", "json", "jsonl", "js", "javascript", "html", "css", "text",
                     "cmake", "diff", "yaml", "toml"}
DIRECTIVE = re.compile(r"^\s*<!--\s*doc-check:\s*(.*?)\s*-->\s*$")
LOOKS_LIKE_COMMAND = re.compile(r"^\s*(\./|build/|gpt\s|tools/|bench/|ctest\b|cmake\b|python3?\b|mpirun\b|\.venv/)")


def _hellaswag(n):
    return "".join(json.dumps({"ctx": f"The cook puts the pan on the stove {i} times and", "endings": [
        "starts to cook.", "flies to the moon.", "sings a song to the pan.", "reads a book."], "label": 0}) + "\n"
                   for i in range(n))


# Stand-ins for the input files the docs name as examples of the reader's own (a.txt, hellaswag_val.jsonl,
# ...): written into the scratch directory before a file's commands run.
STAND_INS = {
    "a.txt": "First document: a few plain words.\n",
    "b.txt": "Second document, with more words in it.\n",
    "a.jsonl": '{"text": "One document per line."}\n{"text": "Another document."}\n',
    "docs.jsonl": '{"text": "A document from JSONL."}\n{"text": "And one more."}\n',
    "hellaswag_val.jsonl": _hellaswag(3),
    "train.jsonl": _hellaswag(6),
    "qa.jsonl": _hellaswag(2),
    "qa_train.jsonl": _hellaswag(4),
    "summaries.txt": "the cat sat on the mat\na dog barked\n",
    "generated.txt": "the cat sat on the mat\na dog barked\n",
    "references.txt": "the cat sat on a mat\nthe dog barked loudly\n",
    "gen.jsonl": '{"summary": "the cat sat"}\n{"summary": "a dog barked"}\n',
    "refs.jsonl": '{"highlights": "the cat sat down"}\n{"highlights": "the dog barked"}\n',
    "news.jsonl": '{"text": "The council met on Monday and voted to open the new library.", '
                  '"summary": "The council voted to open the library."}\n',
    "chats.jsonl": "".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                    {"role": "assistant", "content": a}]}) + "\n"
                           for q, a in [("Hi!", "Hello."), ("Name a colour.", "Blue."),
                                        ("Two plus two?", "Four."), ("Bye.", "Goodbye.")] * 3),
}


GPT_BINARY = None  # set by main(): the binary under test


def _have_mpi():
    if not shutil.which("mpirun") or not GPT_BINARY:
        return False
    p = subprocess.run(["ldd", GPT_BINARY], capture_output=True, text=True)
    return "libmpi" in p.stdout


def _imports(python, module):
    if not os.access(python, os.X_OK):
        return False
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


CAPABILITIES = {
    "mpi": _have_mpi,
    "torch": lambda: _imports("/usr/bin/python3", "torch"),
    "venv": lambda: _imports(os.path.join(REPO, ".venv", "bin", "python"), "transformers"),
}
_have_cache = {}


def have(name):
    if name not in _have_cache:
        _have_cache[name] = CAPABILITIES[name]()
    return _have_cache[name]


class DocError(Exception):
    pass


@dataclass
class Directive:
    kind: str
    args: list
    reason: str
    line: int


@dataclass
class Command:
    path: str  # the Markdown file, relative to the repository
    line: int  # where the command starts
    text: str  # as written
    expect_fail: bool = False
    skip: str = ""  # the reason, when skipped
    run_text: str = ""  # after replacements
    before: list = field(default_factory=list)  # (label, command) run first
    after: list = field(default_factory=list)  # commands run right after it
    include: str = ""  # not a command: run this Markdown file's commands here


def parse_directive(body, path, line):
    m = re.match(r"^([a-z-]+)\s*(.*)$", body, re.S)
    if not m:
        raise DocError(f"{path}:{line}: unreadable doc-check marker: {body}")
    kind, rest = m.group(1), m.group(2)
    args = []
    while True:
        rest = rest.lstrip()
        if rest.startswith('"'):
            s = re.match(r'"((?:[^"\\]|\\.)*)"', rest)
            if not s:
                raise DocError(f"{path}:{line}: unterminated string in doc-check marker")
            args.append(json.loads('"' + s.group(1) + '"'))
            rest = rest[s.end():]
        elif kind in ("include", "needs") and not args and rest and not rest.startswith("("):
            w = re.match(r"(\S+)", rest)
            args.append(w.group(1))
            rest = rest[w.end():]
        else:
            break
    r = re.match(r"^\((.+)\)\s*$", rest.strip(), re.S)
    if not r:
        raise DocError(f"{path}:{line}: doc-check {kind}: give the reason in parentheses")
    want = {"skip": (0, 1), "replace": (2, 2), "before": (1, 1), "after": (2, 2), "include": (1, 1),
            "needs": (1, 2)}
    if kind not in want:
        raise DocError(f"{path}:{line}: unknown doc-check marker '{kind}' (skip, replace, before, after, include, "
                       "needs)")
    if kind == "needs" and args[0] not in CAPABILITIES:
        raise DocError(f"{path}:{line}: doc-check needs: unknown '{args[0]}' (one of {', '.join(CAPABILITIES)})")
    lo, hi = want[kind]
    if not lo <= len(args) <= hi:
        raise DocError(f"{path}:{line}: doc-check {kind} takes {lo}..{hi} quoted arguments, got {len(args)}")
    return Directive(kind, args, r.group(1).strip(), line)


def complete_shell(text):
    """True when `text` parses as complete shell (bash -n)."""
    if text.rstrip().endswith("\\"):
        return False
    p = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    return p.returncode == 0


def split_shell_block(lines, first_line):
    """Commands of a bash block: [(line, text)]; comment-only lines are dropped."""
    cmds, cur, start = [], [], 0
    for i, raw in enumerate(lines):
        if not cur and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if not cur:
            start = first_line + i
        cur.append(raw)
        if complete_shell("\n".join(cur) + "\n"):
            cmds.append((start, "\n".join(cur)))
            cur = []
    if cur:
        raise DocError(f"line {start}: incomplete shell command: {cur[0].strip()}")
    return cmds


def split_transcript(lines, first_line):
    """`$ command` lines of a transcript block: [(line, text, expect_fail)]."""
    out = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        if not raw.startswith("$ "):
            i += 1
            continue
        start = first_line + i
        text = raw[2:]
        i += 1
        while text.rstrip().endswith("\\") and i < len(lines):
            text += "\n" + lines[i]
            i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        fails = any(o.startswith("gpt: error:") or o.strip() == "Killed" for o in output)
        out.append((start, text, fails))
    return out


def parse_markdown(root, path):
    """The file's commands in order, with their markers applied."""
    lines = open(os.path.join(root, path), encoding="utf-8").read().split("\n")
    commands, pending = [], []
    i = 0
    prev_blank = True
    in_list = False

    def take_pending():
        nonlocal pending
        ds, pending = pending, []
        return ds

    while i < len(lines):
        raw = lines[i]
        d = DIRECTIVE.match(raw)
        if d:
            pending.append(parse_directive(d.group(1), path, i + 1))
            i += 1
            continue
        fence = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", raw)
        if fence:
            indent, marker, lang = fence.group(1), fence.group(2), fence.group(3).lower()
            start = i + 1
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(marker):
                j += 1
            body = [l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1:j]]
            directives = take_pending()
            i = j + 1
            prev_blank = False
            if lang in CODE_LANGS:
                try:
                    found = [(ln, t, False) for ln, t in split_shell_block(body, start + 1)]
                except DocError as e:
                    raise DocError(f"{path}:{e}")
            elif lang in NON_COMMAND_LANGS:
                found = []
            else:
                found = split_transcript(body, start + 1)
                if not found and not lang:
                    first = next((l for l in body if l.strip()), "")
                    if LOOKS_LIKE_COMMAND.match(first):
                        raise DocError(f"{path}:{start}: a fenced block of commands with no language: tag it "
                                       "```bash so that it is checked (or mark it <!-- doc-check: skip (why) -->)")
            apply_directives(path, start, directives, found, commands)
            continue
        if pending and raw.strip():
            raise DocError(f"{path}:{pending[0].line}: a doc-check marker must come right before a fenced block")
        # An indented code block (4 spaces after a blank line, outside a list) holding a command.
        if prev_blank and not in_list and re.match(r"^(    |\t)", raw) and LOOKS_LIKE_COMMAND.match(raw):
            raise DocError(f"{path}:{i + 1}: an indented code block of commands: make it a ```bash block so that "
                           "it is checked (or mark it <!-- doc-check: skip (why) -->)")
        if raw.strip():
            in_list = bool(re.match(r"^\s*([-*+]|\d+[.)])\s", raw)) or (in_list and raw.startswith(" "))
        prev_blank = not raw.strip()
        i += 1
    if pending:
        raise DocError(f"{path}:{pending[0].line}: a doc-check marker with no block after it")
    return commands


def apply_directives(path, block_line, directives, found, commands):
    block_cmds = [Command(path, ln, t, fails) for ln, t, fails in found]
    for c in block_cmds:
        c.run_text = c.text
    skip_all = next((d for d in directives if d.kind == "skip" and not d.args), None)
    used = {id(d): False for d in directives}
    for d in directives:
        if d.kind == "include":
            commands.append(Command(path, d.line, "", include=d.args[0]))
            used[id(d)] = True
    if not block_cmds and not skip_all:
        if any(d.kind != "include" for d in directives):
            raise DocError(f"{path}:{directives[0].line}: a doc-check marker on a block with no commands")
        return
    for c in block_cmds:
        if skip_all:
            c.skip = skip_all.reason
            used[id(skip_all)] = True
        for d in directives:
            if d.kind == "skip" and d.args and d.args[0] in c.text:
                c.skip = c.skip or d.reason
                used[id(d)] = True
            elif d.kind == "needs" and (len(d.args) == 1 or d.args[1] in c.text):
                used[id(d)] = True
                if not have(d.args[0]):
                    c.skip = c.skip or f"this machine has no {d.args[0]}: {d.reason}"
    live = [c for c in block_cmds if not c.skip]
    for c in live:
        for d in directives:
            if d.kind == "replace" and d.args[0] in c.run_text:
                c.run_text = c.run_text.replace(d.args[0], d.args[1])
                used[id(d)] = True
            elif d.kind == "after" and d.args[0] in c.text:
                c.after.append(d.args[1])
                used[id(d)] = True
            elif d.kind == "before" and c is live[0]:
                c.before.append(d.args[0])
                used[id(d)] = True
    for d in directives:
        if not used[id(d)]:
            raise DocError(f"{path}:{d.line}: doc-check {d.kind} {d.args} matches no command of the block "
                           f"at line {block_line}: a stale marker")
    commands.extend(block_cmds)


def heading_slugs(text):
    """GitHub's anchors of a Markdown file's headings (outside fenced blocks)."""
    slugs, seen, fence = set(), {}, None
    for ln in text.split("\n"):
        f = re.match(r"^\s*(```+|~~~+)", ln)
        if f:
            fence = None if fence and f.group(1).startswith(fence) else (fence or f.group(1))
            continue
        h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", ln)
        if h and not fence:
            slug = re.sub(r"[^\w\- ]", "", h.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


def check_links(root, path):
    """Relative links of a Markdown file: the file must exist, an #anchor must name a heading."""
    text = open(os.path.join(root, path), encoding="utf-8").read()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    errors = []
    for m in re.finditer(r"\]\(([^)\s]+)\)", prose):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        line = text[:text.find(m.group(0))].count("\n") + 1
        if not os.path.exists(os.path.join(root, dest)):
            errors.append(f"{path}:{line}: link to {target}: no such file")
        elif anchor and dest.endswith(".md"):
            if anchor not in heading_slugs(open(os.path.join(root, dest), encoding="utf-8").read()):
                errors.append(f"{path}:{line}: link to {target}: {dest} has no heading with that anchor")
    return errors


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_scratch(root, build_dir, scratch):
    work = os.path.join(scratch, "work")
    for d in ("work", "work/build", "work/data", "tmp", "home", "bin", "out"):
        os.makedirs(os.path.join(scratch, d), exist_ok=True)
    # Only what the docs run from build/: outputs they write there (build/sms-demo, ...) stay in the scratch.
    for name in ("gpt", "tests", "CTestTestfile.cmake"):
        if os.path.exists(os.path.join(build_dir, name)):
            os.symlink(os.path.join(build_dir, name), os.path.join(work, "build", name))
    data = os.path.join(root, "data")
    for name in os.listdir(data):
        os.symlink(os.path.join(data, name), os.path.join(work, "data", name))
    for name in ("tools", "tests", "bench", "web", "src", "fuzz", ".venv", "requirements-dev.txt"):
        if os.path.exists(os.path.join(root, name)):
            os.symlink(os.path.join(root, name), os.path.join(work, name))
    os.symlink(os.path.join(build_dir, "gpt"), os.path.join(scratch, "bin", "gpt"))
    for name, text in STAND_INS.items():
        with open(os.path.join(work, name), "w", encoding="utf-8") as f:
            f.write(text)
    return work


def shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def run_file(root, path, commands, gpt, timeout, keep_dir):
    """Runs one file's commands; returns (failures, seconds)."""
    build_dir = os.path.dirname(os.path.abspath(gpt))
    scratch = tempfile.mkdtemp(prefix="doc-check-", dir=keep_dir)
    work = make_scratch(root, build_dir, scratch)
    tmp = os.path.join(scratch, "tmp")
    port = str(free_port())

    def localize(text):
        text = text.replace("{port}", port)
        return re.sub(r"(?<![\w./-])/tmp/", tmp + "/", text)

    steps = []  # (label, Command or None, shell text, expect_fail)
    for c in commands:
        if c.include:
            sub = parse_markdown(root, os.path.normpath(os.path.join(os.path.dirname(path), c.include)))
            for s in sub:
                if not s.skip and not s.include:
                    steps.append((f"{s.path}:{s.line} (included)", s, localize(s.run_text), s.expect_fail))
            continue
        if c.skip:
            continue
        for extra in c.before:
            steps.append((f"{c.path}:{c.line} (doc-check before)", c, localize(extra), False))
        steps.append((f"{c.path}:{c.line}", c, localize(c.run_text), c.expect_fail))
        for extra in c.after:
            steps.append((f"{c.path}:{c.line} (doc-check after)", c, localize(extra), False))

    status = os.path.join(scratch, "status")
    script = ["set -o pipefail", f"cd {shell_quote(work)}", f"exec 3>>{shell_quote(status)}"]
    for n, (label, c, text, fails) in enumerate(steps):
        out = os.path.join(scratch, "out", f"{n}.txt")
        check = "[ $__rc -ne 0 ]" if not fails else "[ $__rc -eq 0 ]"
        if re.search(r"\bmpirun\b", text):
            # Open MPI never frees some of its own allocations: under AddressSanitizer (the sanitizer
            # build of the suite) the leak report alone would fail the command, as
            # tests/test_cli_mpi.sh also knows. Memory errors are still reported.
            text = '( export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"\n' + text + "\n)"
        script += [f"printf 'start {n} %s\\n' $EPOCHREALTIME >&3",
                   "{ " + text + "\n} </dev/null >" + shell_quote(out) + " 2>&1",
                   "__rc=$?",
                   f"printf 'end {n} %d %s\\n' $__rc $EPOCHREALTIME >&3",
                   f"if {check}; then exit 100; fi"]
    script.append("exit 0")
    env = dict(os.environ)
    env.update({"TMPDIR": tmp, "HOME": os.path.join(scratch, "home"),
                "PATH": os.path.join(scratch, "bin") + os.pathsep + env.get("PATH", ""),
                "GPT_DOC_CHECK": "1"})
    if os.geteuid() == 0:  # Open MPI refuses root without these (docs/distributed.md says so)
        env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    t0 = time.time()
    proc = subprocess.Popen(["bash", "-c", "\n".join(script)], env=env, cwd=work, start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    timed_out = False
    try:
        _, shell_err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        shell_err = ""
    finally:  # the file's background processes (a server started with &) go with it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    seconds = time.time() - t0
    started, ended, took = {}, {}, []
    if os.path.exists(status):
        for ln in open(status):
            p = ln.split()
            if p[0] == "start":
                started[int(p[1])] = float(p[2])
            elif p[0] == "end":
                ended[int(p[1])] = int(p[2])
                took.append((float(p[3]) - started[int(p[1])], steps[int(p[1])][0]))
    failures = []
    for n, (label, c, text, fails) in enumerate(steps):
        if n in ended:
            rc = ended[n]
            if (rc != 0) != fails:
                want = "to fail (the doc shows an error)" if fails else "exit status 0"
                failures.append((label, c.text, text, f"exit status {rc}, expected {want}",
                                 os.path.join(scratch, "out", f"{n}.txt")))
                break
        elif n in started:
            why = f"timed out after {timeout} s" if timed_out else "the shell died"
            failures.append((label, c.text, text, why, os.path.join(scratch, "out", f"{n}.txt")))
            break
    if not failures and proc.returncode not in (0, None) and not timed_out and len(ended) < len(steps):
        failures.append((path, "", "", f"the shell stopped: {shell_err.strip()[-500:]}", None))
    report = []
    for label, shown, ran, why, out in failures:
        tail = ""
        if out and os.path.exists(out):
            tail = "".join(open(out, errors="replace").readlines()[-15:])
        report.append((label, shown, ran, why, tail))
    if keep_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return report, seconds, len(ended), len(steps), took


def doc_files(root):
    files = ["README.md"]
    files += sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(root, "docs")) if f.endswith(".md"))
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", required=True, help="the gpt binary (its directory stands in for build/)")
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--only", nargs="+", help="these Markdown files (paths relative to the repository)")
    ap.add_argument("--list", action="store_true", help="print the commands and markers; run nothing")
    ap.add_argument("--keep", help="keep the scratch directories under this directory")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per file (default 300)")
    a = ap.parse_args()
    global REPO, GPT_BINARY
    root = REPO = os.path.abspath(a.repo)
    GPT_BINARY = os.path.abspath(a.gpt)
    if not os.access(a.gpt, os.X_OK):
        sys.exit(f"doc_commands.py: {a.gpt} is not an executable")
    files = a.only or doc_files(root)
    parsed, errors = {}, []
    for f in files:
        try:
            parsed[f] = parse_markdown(root, f)
            errors += check_links(root, f)
        except DocError as e:
            errors.append(str(e))
        except FileNotFoundError:
            errors.append(f"{f}: no such file")
    if errors:
        for e in errors:
            print(f"FAIL {e}")
        return 1
    skipped = [(c.path, c.line, c.text, c.skip) for f in files for c in parsed[f] if c.skip]
    if a.list:
        for f in files:
            for c in parsed[f]:
                if c.include:
                    print(f"{c.path}:{c.line}: include {c.include}")
                    continue
                for extra in c.before:
                    print(f"{c.path}:{c.line}: RUN first (marker): {extra}")
                tag = f"SKIP ({c.skip})" if c.skip else ("RUN, must fail" if c.expect_fail else "RUN")
                shown = c.run_text if not c.skip else c.text
                print(f"{c.path}:{c.line}: {tag}: {shown}")
        return 0
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    total_fail = 0
    slowest = []
    t_all = time.time()
    for f in files:
        cmds = parsed[f]
        runnable = [c for c in cmds if not c.skip or c.include]
        if not runnable:
            continue
        report, seconds, ran, n, took = run_file(root, f, cmds, os.path.abspath(a.gpt), a.timeout, a.keep)
        slowest.extend(took)
        state = "ok" if not report else "FAIL"
        print(f"{state:4} {f}: {ran} of {n} commands in {seconds:.1f} s", flush=True)
        for label, shown, ran_text, why, tail in report:
            total_fail += 1
            print(f"FAIL {label}: {shown.strip()}")
            if ran_text.strip() != shown.strip():
                print(f"     ran as: {ran_text.strip()}")
            print(f"     {why}; its output ends:")
            for ln in tail.rstrip().split("\n"):
                print(f"       | {ln}")
    print("slowest commands:")
    for sec, label in sorted(slowest, reverse=True)[:8]:
        print(f"  {sec:6.1f} s  {label}")
    print(f"skipped {len(skipped)} commands (marked in the Markdown):")
    for p, ln, text, why in skipped:
        first = text.strip().split("\n")[0]
        print(f"  {p}:{ln}: {first[:90]}{' ...' if len(first) > 90 else ''}  -- {why}")
    print(f"{'FAILED' if total_fail else 'passed'}: {len(files)} files, {time.time() - t_all:.0f} s")
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
