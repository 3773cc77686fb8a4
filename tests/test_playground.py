"""The playground page of `gpt serve` end to end, in headless Chromium driven by Selenium.

It makes a tiny random model with a character vocabulary (every candidate is a whole character,
so K candidates are K distinct strings), starts `gpt serve --model DIR --port 0`, opens `/`, and:
types a prompt, sets max tokens and a seed, clicks Generate and waits for the streamed tokens;
clicks a token and checks the candidates panel (K candidates, probabilities in (0, 1] summing to
at most 1, the sampled token among them); clicks another candidate and checks that the text was
cut at that token, continued from the candidate and streamed further; runs the attention view for
two layers and checks the heat map was drawn (a canvas of the right size with many colours);
checks POST /v1/attention answers a bad layer with 400; draws the logit lens (POST /v1/inspect, a bad
top_k a 400); and takes a screenshot, which must
decode to a PNG of a real size that is not a single colour.

Usage: .venv/bin/python tests/test_playground.py [--gpt build/gpt] [--screenshot FILE] [--keep DIR]
Prints "ok - ..." / "not ok - ..." lines; exit status 0 when all pass.
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "the quick brown fox jumps over the lazy dog"
MAX_TOKENS = 12
K = 5

results = []


def report(name, why=""):
    results.append(not why)
    print(f"ok - {name}" if not why else f"not ok - {name}: {why}", flush=True)


def content(e):
    """An element's text exactly (Selenium's .text trims and folds whitespace)."""
    return e.get_attribute("textContent")


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()}")
    return p.stdout


class Server:
    """`gpt serve --port 0`, ready once it prints "listening on http://HOST:PORT" on stderr."""

    def __init__(self, gpt, model):
        self.proc = subprocess.Popen([gpt, "serve", "--model", model, "--port", "0", "--parallel", "2"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
        self.lines = []
        self.url = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"listening on (http://\S+)", line)
                if m and not self.url:
                    self.url = m.group(1).rstrip("/")
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(60)
        if not self.url:
            self.stop()
            raise RuntimeError("gpt serve did not say 'listening on http://...': " + " | ".join(self.lines[-5:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def png_pixels(data):
    """(width, height, rows of pixel bytes) of an 8-bit RGB or RGBA PNG, decoded here (no imaging
    library in the venv): chunks, zlib, and the five scanline filters of the PNG specification."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width, height, bpp = 8, b"", 0, 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour not in (2, 6):
                raise ValueError(f"bit depth {depth}, colour type {colour}: not 8-bit RGB(A)")
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def browser():
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        opts.add_argument(a)
    if os.path.exists("/usr/lib/chromium/chromium"):
        opts.binary_location = "/usr/lib/chromium/chromium"  # Debian's binary behind the /usr/bin wrapper
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpt", default=os.path.join(ROOT, "build", "gpt"))
    ap.add_argument("--screenshot", help="also write the screenshot here")
    ap.add_argument("--keep", help="work in this directory and keep it")
    a = ap.parse_args()
    work_ctx = None if a.keep else tempfile.TemporaryDirectory(prefix="playground_")
    work = a.keep or work_ctx.name
    os.makedirs(work, exist_ok=True)

    text = os.path.join(work, "chars.txt")
    chars = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\n"
    with open(text, "w") as f:
        f.write(chars)
    vocab, model = os.path.join(work, "vocab"), os.path.join(work, "model")
    run([a.gpt, "char-vocab", "--input", text, "--out", vocab])
    run([a.gpt, "init", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--context", "128", "--vocab-size", str(len(set(chars))),
         "--tokenizer", "char:" + vocab, "--seed", "5", "--out", model])
    server = Server(a.gpt, model)
    driver = None
    try:
        driver = browser()
        wait = WebDriverWait(driver, 60)
        driver.get(server.url + "/")
        report("the page loads from the binary", "" if "gpt.cpp playground" in driver.title else
               f"title is {driver.title!r}")

        # ---- prompt, controls, Generate, streamed tokens -----------------------------------------
        prompt = driver.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys(PROMPT)
        for field, value in (("max-tokens", MAX_TOKENS), ("seed", 3), ("candidates-k", K), ("temperature", 1.0),
                             ("top-k", K)):  # top-k = K: the sampled token is among the K shown
            e = driver.find_element(By.ID, field)
            e.clear()
            e.send_keys(str(value))
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#output .token")) > 0)
        wait.until(lambda d: d.find_element(By.ID, "generate").is_enabled())
        tokens = driver.find_elements(By.CSS_SELECTOR, "#output .token")
        status = driver.find_element(By.ID, "status").text
        why = ""
        if len(tokens) != MAX_TOKENS:
            why = f"{len(tokens)} token spans, expected {MAX_TOKENS} (status: {status!r})"
        elif "error" in (driver.find_element(By.ID, "status").get_attribute("class") or ""):
            why = f"status shows an error: {status!r}"
        elif any(not t.get_attribute("title").startswith("p = ") for t in tokens):
            why = "a token has no probability tint"
        report(f"Generate streams {MAX_TOKENS} tokens, each a span with its probability", why)
        output = content(driver.find_element(By.ID, "output"))
        report("the output starts with the prompt", "" if output.startswith(PROMPT) else f"output {output!r}")

        # ---- candidates of one token ---------------------------------------------------------
        pick = 2
        before = "".join(content(t) for t in tokens[:pick])
        tokens[pick].click()
        wait.until(lambda d: d.find_element(By.ID, "candidates").is_displayed())
        cands = driver.find_elements(By.CSS_SELECTOR, "#candidates .candidate")
        probs = [float(c.get_attribute("data-prob")) for c in cands]
        names = [c.get_attribute("data-token") for c in cands]
        sampled = [c for c in cands if "sampled" in c.get_attribute("class")]
        why = ""
        if len(cands) != K:
            why = f"{len(cands)} candidates, expected {K}"
        elif not all(0 < p <= 1 for p in probs):
            why = f"probabilities out of (0, 1]: {probs}"
        elif sum(probs) > 1 + 1e-6:
            why = f"probabilities sum to {sum(probs)} > 1"
        elif probs != sorted(probs, reverse=True):
            why = f"not sorted best first: {probs}"
        elif len(set(names)) != K:
            why = f"candidate strings repeat: {names}"
        elif len(sampled) != 1 or sampled[0].get_attribute("data-token") != content(tokens[pick]):
            why = f"the sampled token {content(tokens[pick])!r} is not marked once among {names}"
        report(f"clicking a token shows its top {K} candidates with probabilities", why)

        # ---- continue from another candidate ---------------------------------------------------
        alt = next(c for c in reversed(cands) if "sampled" not in c.get_attribute("class"))
        alt_token = alt.get_attribute("data-token")
        alt.click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#output .token")) > pick + 1)
        wait.until(lambda d: d.find_element(By.ID, "generate").is_enabled())
        tokens = driver.find_elements(By.CSS_SELECTOR, "#output .token")
        output = content(driver.find_element(By.ID, "output"))
        want = PROMPT + before + alt_token
        why = ""
        if not output.startswith(want):
            why = f"output {output!r} does not start with {want!r}"
        elif "chosen" not in tokens[pick].get_attribute("class") or content(tokens[pick]) != alt_token:
            why = f"token {pick} is {content(tokens[pick])!r}, not the chosen candidate {alt_token!r}"
        elif len(tokens) != pick + 1 + MAX_TOKENS:
            why = f"{len(tokens)} tokens after continuing, expected {pick + 1 + MAX_TOKENS}"
        report("clicking a candidate cuts the text there and continues from it", why)

        # ---- attention view ---------------------------------------------------------------------
        def heatmap_drawn():
            return driver.execute_script("""
                const c = document.getElementById('heatmap');
                if (!c.width || !c.dataset.tokens) return null;
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                const seen = new Set();
                for (let i = 0; i < d.length; i += 4 * 7) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                return {tokens: Number(c.dataset.tokens), width: c.width, height: c.height, colours: seen.size};
            """)

        driver.find_element(By.ID, "attention-run").click()
        wait.until(lambda d: heatmap_drawn() is not None)
        h = heatmap_drawn()
        layers = Select(driver.find_element(By.ID, "attention-layer"))
        why = ""
        if h["tokens"] != len(PROMPT):
            why = f"the map has {h['tokens']} tokens, the prompt {len(PROMPT)} characters"
        elif h["width"] < len(PROMPT) * 6 or h["height"] < len(PROMPT) * 6:
            why = f"canvas {h['width']}x{h['height']} is too small for {len(PROMPT)} tokens"
        elif h["colours"] < 20:
            why = f"only {h['colours']} colours on the canvas"
        elif len(layers.options) != 2 or len(Select(driver.find_element(By.ID, "attention-head")).options) != 2:
            why = "the layer and head selectors do not list the model's 2 layers and 2 heads"
        report("the attention view draws a heat map over the prompt", why)
        layers.select_by_value("1")
        wait.until(lambda d: "layer 1," in d.find_element(By.ID, "attention-status").text)
        report("choosing another layer redraws the map", "" if heatmap_drawn() else "no map")

        # hover shows a value
        canvas = driver.find_element(By.ID, "heatmap")
        webdriver.ActionChains(driver).move_to_element_with_offset(canvas, canvas.size["width"] // 2 - 8,
                                                                   canvas.size["height"] // 2 - 4).perform()
        tip = driver.find_element(By.ID, "heatmap-tip")
        report("hovering a cell shows its weight",
               "" if tip.is_displayed() and re.search(r"\d\.\d{4}$", tip.text) else f"tip {tip.text!r}")

        # ---- logit lens view ----------------------------------------------------------------------
        def lens_shape():
            return driver.execute_script("""
                const rows = document.querySelectorAll('#lens tr');
                if (rows.length < 2) return null;
                const cells = [...rows].slice(1).map(r => r.querySelectorAll('td').length);
                const colours = new Set([...document.querySelectorAll('#lens td')].map(td => td.style.background));
                return {rows: rows.length - 1, cells: cells, colours: colours.size,
                        backgrounds: [...document.querySelectorAll('#lens td')].map(td => td.style.background),
                        title: document.querySelector('#lens td').title};
            """)

        driver.find_element(By.ID, "lens-run").click()
        wait.until(lambda d: lens_shape() is not None)
        ls = lens_shape()
        why = ""
        if ls["rows"] != 2 or ls["cells"] != [len(PROMPT)] * 2:
            why = f"expected 2 layers x {len(PROMPT)} positions, got {ls['rows']} rows of {ls['cells']}"
        elif ls["colours"] < 1 or "" in ls["backgrounds"]:
            why = "a cell has no colour"  # (a random model's cells may all share the palest one)
        elif ls["title"].count("%") != 5:
            why = f"a cell's tooltip does not list the top 5: {ls['title']!r}"
        report("the logit-lens view draws layers x positions with the top tokens", why)

        # ---- the endpoint's errors ----------------------------------------------------------------
        req = urllib.request.Request(server.url + "/v1/inspect", method="POST",
                                     data=json.dumps({"prompt": "abc", "top_k": 0}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=30)
            report("POST /v1/inspect with a bad top_k is a 400", "it succeeded")
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            report("POST /v1/inspect with a bad top_k is a 400",
                   "" if e.code == 400 and "top_k" in body else f"HTTP {e.code}: {body}")
        req = urllib.request.Request(server.url + "/v1/attention", method="POST",
                                     data=json.dumps({"prompt": "abc", "layer": 7}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=30)
            report("POST /v1/attention with a bad layer is a 400", "it succeeded")
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            report("POST /v1/attention with a bad layer is a 400",
                   "" if e.code == 400 and "layer 7 is out of range" in body else f"HTTP {e.code}: {body}")

        # ---- screenshot ---------------------------------------------------------------------------
        # with a token's candidates open, as the page is used
        driver.find_elements(By.CSS_SELECTOR, "#output .token")[pick].click()
        wait.until(lambda d: d.find_element(By.ID, "candidates").is_displayed())
        png = driver.get_screenshot_as_png()
        if a.screenshot:
            with open(a.screenshot, "wb") as f:
                f.write(png)
        try:
            w, hgt, bpp, rows = png_pixels(png)
            colours = {row[x:x + 3] for row in rows[::5] for x in range(0, w * bpp, bpp * 5)}
            why = ""
            if w < 400 or hgt < 300:
                why = f"{w}x{hgt} pixels"
            elif len(colours) < 10:
                why = f"{len(colours)} distinct colours"
        except (ValueError, zlib.error, struct.error) as e:
            why = f"does not decode: {e}"
        report(f"the screenshot is a real PNG ({len(png)} bytes)", why)
    except Exception as e:  # a failed wait or a missing element: one failure with its reason
        report("the page works end to end", f"{type(e).__name__}: {e}")
    finally:
        if driver:
            driver.quit()
        server.stop()
        if work_ctx:
            work_ctx.cleanup()
    failed = results.count(False)
    print(f"{results.count(True)} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
