// Generates tests/data/tokenizer/: the exactness vectors for runtime/tokenizer.c, made by the
// real tiktoken (the npm package, Rust compiled to WASM) with Grok-2's V1 pre-tokenizer pattern
// over the cl100k_base and o200k_base ranks, and those vocabularies in the tok.json format of
// docs/grok2-model.md section 4 (zstd -19 compressed).
//
//   cp tests/tokenizer/package.json tests/tokenizer/package-lock.json build-tok/npm/
//   npm ci --prefix build-tok/npm
//   node tests/tokenizer/make_vectors.mjs            # TIKTOKEN_NPM_DIR overrides build-tok/npm
//
// The output is deterministic (fixed PRNG seed, JSON key order, zstd -19), so rerunning it on
// the same package version reproduces the committed files byte for byte.
//
// What tiktoken cannot say: its encoder takes JS strings, i.e. valid Unicode only. For text
// with invalid UTF-8 the vectors follow our definition (runtime/tokenizer.c): each maximal run
// of invalid bytes is one piece merged by rank, and each maximal valid stretch is encoded
// exactly as tiktoken encodes it alone. The valid stretches come from tiktoken; the invalid runs
// from bpe() below, a transcription of tiktoken's byte_pair_encode that this script first checks
// against tiktoken itself.
import { createRequire } from "module";
import { execFileSync } from "child_process";
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const npmDir = process.env.TIKTOKEN_NPM_DIR || path.join(root, "build-tok/npm");
const require = createRequire(path.join(npmDir, "package.json"));
const { Tiktoken } = require("tiktoken/lite");
const tiktokenVersion = JSON.parse(
  fs.readFileSync(path.join(npmDir, "node_modules/tiktoken/package.json"), "utf8"),
).version;
const outDir = path.join(root, "tests/data/tokenizer");

const V1 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" +
  "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Grok-2's own special tokens, added after each encoding's specials so that the test
// vocabularies have them too (none is a prefix of another special token: with prefixes,
// tiktoken's choice would depend on hash-map order).
const GROK_SPECIALS = ["<|pad|>", "<|separator|>", "<|eos|>"];

// ---- deterministic randomness ---------------------------------------------------------------
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- bytes ----------------------------------------------------------------------------------
const utf8 = (s) => new TextEncoder().encode(s);
const latin1Key = (bytes) => Buffer.from(bytes).toString("latin1");
const concatBytes = (parts) => Buffer.concat(parts.map((p) => Buffer.from(p)));

// Splits bytes into maximal valid-UTF-8 and invalid stretches: [{valid, bytes}]. A character is
// valid when its lead byte, length and continuation bytes form a well-formed sequence (no
// overlongs, surrogates or values over U+10FFFF), which is what PCRE2 checks.
function splitValidity(b) {
  const out = [];
  const push = (valid, from, to) => {
    if (to <= from) return;
    const last = out[out.length - 1];
    if (last && last.valid === valid) last.to = to;
    else out.push({ valid, from, to });
  };
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    let n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    let ok = n > 0 && i + n <= b.length;
    for (let k = 1; ok && k < n; k++) {
      const x = b[i + k];
      let lo = 0x80, hi = 0xbf;
      if (k === 1) {
        if (c === 0xe0) lo = 0xa0;
        if (c === 0xed) hi = 0x9f;
        if (c === 0xf0) lo = 0x90;
        if (c === 0xf4) hi = 0x8f;
      }
      if (x < lo || x > hi) ok = false;
    }
    if (ok) {
      push(true, i, i + n);
      i += n;
    } else {
      push(false, i, i + 1);
      i += 1;
    }
  }
  return out.map((s) => ({ valid: s.valid, bytes: b.subarray(s.from, s.to) }));
}

// ---- tiktoken's byte_pair_encode, transcribed (checked against tiktoken before use) ----------
function bpe(piece, ranks) {
  const whole = ranks.get(latin1Key(piece));
  if (whole !== undefined) return [whole];
  const rankOf = (a, b) => {
    const r = ranks.get(latin1Key(piece.subarray(a, b)));
    return r === undefined ? Infinity : r;
  };
  const parts = [];
  for (let i = 0; i + 1 < piece.length; i++) parts.push([i, rankOf(i, i + 2)]);
  parts.push([piece.length - 1, Infinity]);
  parts.push([piece.length, Infinity]);
  const pairRank = (i) => (i + 3 < parts.length ? rankOf(parts[i][0], parts[i + 3][0]) : Infinity);
  for (;;) {
    let best = Infinity, bi = -1;
    for (let i = 0; i < parts.length - 1; i++)
      if (parts[i][1] < best) {
        best = parts[i][1];
        bi = i;
      }
    if (bi < 0) break;
    if (bi > 0) parts[bi - 1][1] = pairRank(bi - 1);
    parts[bi][1] = pairRank(bi);
    parts.splice(bi + 1, 1);
  }
  const ids = [];
  for (let i = 0; i + 1 < parts.length; i++) {
    const r = ranks.get(latin1Key(piece.subarray(parts[i][0], parts[i + 1][0])));
    if (r === undefined) throw new Error("byte without a token");
    ids.push(r);
  }
  return ids;
}

// ---- the corpus -----------------------------------------------------------------------------
function corpusFiles() {
  const dir = path.join(here, "corpus");
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".txt"))
    .sort()
    .map((f) => ({ name: f, text: fs.readFileSync(path.join(dir, f), "utf8") }));
}

const ATOMS = {
  latin: [..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "é", "ß", "ẞ", "ſ", "\u212a", "İ", "ı", "ǅ", "ﬁ", "Ω", "ñ", "Å", "ø"],
  words: [" the", " and", " of", "ing", "tion", " The", " THE", "ness", " un", "http", "://", "www", ".com", " function", "return", "self", " is", " a", " I", "Hello", " world", "über", " naïve"],
  scripts: ["я", "Ж", "щ", "ё", "λ", "Σ", "ς", "ά", "ب", "ة", "ﻻ", "ש", "ּ", "क", "ि", "्", "ष", "ক", "த", "ก", "ั", "่", "ไ", "中", "国", "語", "の", "カ", "ｶ", "ー", "한", "ㄱ", "ꆈ", "ᠮ", "ጀ", "Ⴀ", "ა", "Ա"],
  rare: ["\u{31350}", "\u{1E4D0}", "\u{2EBF0}", "\u{105C0}", "\u{13460}", "\u{11F04}", "\u{1E030}", "\u0CF3", "\u0301", "\u0308", "\u20DD", "\u{E0067}", "\uFE0F", "\u200D", "\uE000", "\u{10FFFD}", "\uFFFD", "\uFEFF", "\u00AD"],
  digits: [..."0123456789", "٣", "۴", "१", "৫", "๓", "５", "²", "½", "Ⅻ", "ↀ", "①", "\u{1D2C0}", "\u{1E4F0}", "\u{16130}", "𝟘"],
  spaces: [" ", " ", " ", "  ", "   ", "\t", "\n", "\n", "\r\n", "\r", "\n\n", " \n", "\u00a0", "\u3000", "\u2028", "\u2029", "\u0085", "\u000b", "\u000c", "\u180e", "\u200b", "\u2009", "\u1680", "\u202f"],
  apostrophes: ["'", "'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'Re", "'ve", "'VE", "'vE", "'m", "'M", "'ll", "'LL", "'lL", "'Ll", "'d", "'D", "'ſ", "'\u212a", "’s", "'x", "''"],
  punct: [..."., !?-_(){}[]<>/\\\"#@$%^&*+=|~`:;", "...", "…", "—", "«", "»", "¿", "¡", "、", "。", "！", "？", "・", "·", "§", "¶", "†", "→", "∑", "©"],
  emoji: ["😀", "👍", "👍🏽", "👨‍👩‍👧", "🧑‍💻", "🇯🇵", "🇺🇸", "❤️", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🏳️‍🌈", "🫠", "✅", "⚡"],
  specials: ["<|endoftext|>", "<|eos|>", "<|separator|>", "<|pad|>", "<|fim_prefix|>", "<|endofprompt|>", "<|", "|>", "<|endoftext", "endoftext|>", "<|eos", "<||>", "<<|eos|>>"],
};

function synthetic(rand, count, withSpecials) {
  const cats = Object.keys(ATOMS).filter((c) => withSpecials || c !== "specials");
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  const out = [];
  for (let n = 0; n < count; n++) {
    // each string favours a few categories, so runs of one kind (spaces, digits...) appear
    const weights = cats.map(() => (rand() < 0.4 ? rand() * 10 : rand()));
    const total = weights.reduce((a, b) => a + b, 0);
    const len = 1 + Math.floor(rand() * rand() * 80);
    let s = "";
    for (let k = 0; k < len; k++) {
      let r = rand() * total, c = 0;
      while (r >= weights[c] && c < cats.length - 1) r -= weights[c++];
      s += pick(ATOMS[cats[c]]);
    }
    out.push(s);
  }
  return out;
}

// Long runs: pieces far longer than the C encoder's linear-scan limit (the heap path).
function longRuns() {
  const rep = (s, n) => s.repeat(n);
  return [
    ["spaces-5000", rep(" ", 5000)],
    ["spaces-then-word", rep(" ", 3000) + "word" + rep(" ", 3001) + "\n"],
    ["tabs-2000", rep("\t", 2000) + "x"],
    ["newlines-3000", rep("\n", 3000)],
    ["crlf-1500", rep("\r\n", 1500) + "end\r\n"],
    ["mixed-ws-run", rep(" \t\n\r\n  \u00a0\u3000", 400)],
    ["letters-a-4000", rep("a", 4000)],
    ["letters-ab-3000", rep("ab", 1500)],
    ["word-mix-long", rep("Pneumonoultramicroscopicsilicovolcanoconiosis", 60)],
    ["digits-2000", rep("0123456789", 200)],
    ["cjk-run", rep("人工智能正在改变我们的生活方式", 150)],
    ["hangul-run", rep("다람쥐헌쳇바퀴에타고파", 200)],
    ["cyrillic-run", rep("съешьжеещёэтихмягкихфранцузскихбулок", 60)],
    ["thai-run", rep("เป็นมนุษย์สุดประเสริฐเลิศคุณค่า", 80)],
    ["emoji-run", rep("😀👍🏽🇯🇵❤️", 300)],
    ["punct-run", rep("!?.,;:-_=+*/\\|", 300)],
    ["zwj-run", rep("👨‍👩‍👧‍👦", 200)],
    ["dashes", rep("-", 5000) + "\n" + rep("=", 3000)],
    ["apostrophes", rep("'s'S'll'LL", 300)],
    ["base64-like", rep("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkrLw==", 40)],
    ["hex-dump", rep("0x7f 0xff 0xa0 deadbeef ", 300)],
  ];
}

// ---- vocabularies ---------------------------------------------------------------------------
function loadEncoding(name) {
  const spec = require(`tiktoken/encoders/${name}.json`);
  const specials = { ...spec.special_tokens };
  let next = Math.max(...Object.values(specials)) + 1;
  for (const s of GROK_SPECIALS) specials[s] = next++;
  const enc = new Tiktoken(spec.bpe_ranks, specials, V1);
  const firstSpecial = Math.min(...Object.values(specials));
  const regular = []; // [id, Uint8Array]
  for (let id = 0; id < firstSpecial; id++) {
    let bytes;
    try {
      bytes = enc.decode_single_token_bytes(id);
    } catch {
      continue; // a hole in the id space
    }
    regular.push([id, bytes]);
  }
  const ranks = new Map(regular.map(([id, b]) => [latin1Key(b), id]));
  return { name, spec, specials, enc, regular, ranks };
}

function tokJson(v) {
  // the shape of Grok-2's tokenizer.tok.json (grok2-model.md section 4)
  const obj = {
    regular_tokens: v.regular.map(([id, b]) => ({ token: id, bytes: Array.from(b) })),
    special_tokens: Object.entries(v.specials)
      .sort((a, b) => a[1] - b[1])
      .map(([s, id]) => ({ token: id, bytes: Array.from(utf8(s)) })),
    word_split: "V1",
    vocab_size: Math.max(...Object.values(v.specials)) + 1,
    source: `tiktoken ${tiktokenVersion} ${v.name} ranks; special tokens: ${v.name}'s plus ${GROK_SPECIALS.join(" ")}`,
  };
  return JSON.stringify(obj);
}

function writeZst(file, text) {
  const tmp = path.join(outDir, `.${path.basename(file)}.tmp`);
  fs.writeFileSync(tmp, text);
  execFileSync("zstd", ["-19", "-q", "-f", "--no-progress", "-o", file, tmp]);
  fs.unlinkSync(tmp);
}

// ---- checks of this script's own helpers against tiktoken ------------------------------------
function checkBpe(v, rand) {
  const whole = new Tiktoken(v.spec.bpe_ranks, {}, "[\\s\\S]+"); // one piece: plain BPE
  const samples = synthetic(rand, 400, false).concat(longRuns().slice(0, 8).map((x) => x[1].slice(0, 700)));
  for (const s of samples) {
    const want = Array.from(whole.encode_ordinary(s));
    const got = bpe(utf8(s), v.ranks);
    if (want.join() !== got.join()) throw new Error(`bpe() differs from tiktoken on ${JSON.stringify(s)}`);
  }
  whole.free();
}

// ---- vectors --------------------------------------------------------------------------------
const INVALID_RUNS = [
  [0xff], [0xfe], [0x80], [0xbf], [0xc0, 0xaf], [0xc1, 0xbf], [0xe4, 0xbd], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80], [0xf5], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc3], [0xf0, 0x9f, 0x98], [0xe0, 0x80, 0x80],
  [0xf0, 0x80, 0x80, 0x80], [0x80, 0x80, 0x80], [0xc3, 0x28], [0xe2, 0x82], [0xfc, 0x80, 0x80, 0x80, 0x80, 0x80],
];

function makeVectors(v, texts, invalidTexts) {
  const vectors = [];
  const add = (name, bytes, allowSpecial, ids) =>
    vectors.push({ name, allow_special: allowSpecial, text_b64: Buffer.from(bytes).toString("base64"), ids: Array.from(ids) });
  for (const [name, s, allowSpecial] of texts) {
    const ids = allowSpecial ? v.enc.encode(s, "all") : v.enc.encode_ordinary(s);
    add(name, utf8(s), allowSpecial, ids);
  }
  for (const [name, bytes] of invalidTexts) {
    const ids = [];
    for (const part of splitValidity(bytes)) {
      if (part.valid) ids.push(...v.enc.encode_ordinary(Buffer.from(part.bytes).toString("utf8")));
      else ids.push(...bpe(part.bytes, v.ranks));
    }
    add(name, bytes, false, ids);
  }
  return vectors;
}

function buildTexts(rand) {
  const texts = [];
  for (const f of corpusFiles()) {
    texts.push([`${f.name}`, f.text, false]);
    f.text.split(/\n\s*\n/).forEach((p, i) => texts.push([`${f.name}#para${i}`, p, false]));
    f.text.split("\n").forEach((l, i) => texts.push([`${f.name}#line${i}`, l, false]));
    f.text.split("\n").forEach((l, i) => texts.push([`${f.name}#line${i}+nl`, l + "\n", false]));
  }
  for (const [name, s] of longRuns()) texts.push([`long/${name}`, s, false]);
  synthetic(rand, 3000, false).forEach((s, i) => texts.push([`synthetic/${i}`, s, false]));
  // special tokens: the same strings with and without allow_special
  synthetic(rand, 600, true).forEach((s, i) => {
    texts.push([`special/${i}/allowed`, s, true]);
    texts.push([`special/${i}/as-text`, s, false]);
  });
  const fixed = [
    "<|endoftext|>", "<|eos|>", "a<|eos|>b", "<|separator|>\n\n", "Human: What is your name?<|separator|>\n\nAssistant:",
    "System: Be brief.<|separator|>\n\nHuman: Hi<|separator|>\n\nAssistant: Hello!<|separator|>\n\n<|eos|>",
    "<|eos|><|eos|><|pad|>", "<|<|eos|>|>", "<|endoftext", "text <|endoftext|> more   <|endofprompt|>\n",
    "  <|eos|>  ", "\n<|eos|>\n", "x'<|eos|>s", "<|EOS|>", "< |eos|>", "<|eos|", "|>", "<|",
  ];
  fixed.forEach((s, i) => {
    texts.push([`special-fixed/${i}/allowed`, s, true]);
    texts.push([`special-fixed/${i}/as-text`, s, false]);
  });
  // edge cases
  const edges = [
    "", " ", "\n", "\r\n", "\r", "\t", "a", "'", "'s", "'S", "''s", " 's", "a's", "A'S", "1", "12", "123", "1234567890",
    "3.14159", "-42", "1,000,000", "1e10", "0x1F", "2024-03-15T12:34:56Z", "v1.2.3", "a  b", "a   b", "a \n b", "a\n\n\nb",
    "a \t\n", "   ", " \n", "\n ", "x \n\n y", "x\r\n\r\ny", "x \r\n", "end   ", "end\t\t", "!!!\n\n", " !!!", "?\r\n\r\n",
    "\u00a0a", "a\u00a0", "\u3000\u3000x", "a\u180eb", "\u180e", "a \u180e b", "\u2028", "a\u0085b", "\u000b\u000c",
    "don't", "DON'T", "we'll", "WE'LL", "I'd", "I'D", "they're", "THEY'RE", "you've", "YOU'VE", "I'm", "I'M", "it's", "IT'S",
    "'ſ", "'\u212a", "x'ſx", "İstanbul", "ǅemal", "ﬁ", "\u{31350}\u{31351}", "x\u{31350}y", "!\u{31350}", "\u{31350}!",
    "1\u{1D2C0}2", "\u{1E4F0}\u{1E4F1}", " \u{2EBF0}", "a\u0301", "\u0301", "e\u0301\u0301\u0301", "👨‍👩‍👧‍👦", " 👍🏽", "🇯🇵🇺🇸",
  ];
  edges.forEach((s, i) => {
    texts.push([`edge/${i}`, s, false]);
    texts.push([`edge/${i}/allowed`, s, true]);
  });
  return texts;
}

function buildInvalid(rand) {
  const out = [];
  const pickRun = () => Uint8Array.from(INVALID_RUNS[Math.floor(rand() * INVALID_RUNS.length)]);
  INVALID_RUNS.forEach((r, i) => {
    out.push([`invalid/alone/${i}`, Uint8Array.from(r)]);
    out.push([`invalid/in-word/${i}`, concatBytes([utf8("abc"), r, utf8("def")])]);
    out.push([`invalid/after-space/${i}`, concatBytes([utf8("hello "), r, utf8(" world")])]);
    out.push([`invalid/before-spaces/${i}`, concatBytes([utf8("x"), r, utf8("   \n  y")])]);
    out.push([`invalid/after-spaces/${i}`, concatBytes([utf8("x   "), r, utf8("y")])]);
    out.push([`invalid/cjk/${i}`, concatBytes([utf8("你好"), r, utf8("世界")])]);
    out.push([`invalid/apostrophe/${i}`, concatBytes([utf8("it'"), r, utf8("s")])]);
    out.push([`invalid/digits/${i}`, concatBytes([utf8("12"), r, utf8("34")])]);
  });
  // random mixtures of valid text and invalid runs (adjacent runs merge into one invalid stretch)
  synthetic(rand, 300, false).forEach((s, i) => {
    const chars = [...s];
    const parts = [];
    for (const c of chars) {
      parts.push(utf8(c));
      if (rand() < 0.15) parts.push(pickRun());
    }
    if (rand() < 0.5) parts.unshift(pickRun());
    out.push([`invalid/mixed/${i}`, concatBytes(parts)]);
  });
  // every single byte alone, and every byte after a letter
  for (let b = 0; b < 256; b++) out.push([`byte/${b}`, Uint8Array.from([b])]);
  for (let b = 0x80; b < 256; b++) out.push([`byte-after-letter/${b}`, Uint8Array.from([0x61, b, 0x62])]);
  return out;
}

// ---- main -----------------------------------------------------------------------------------
fs.mkdirSync(outDir, { recursive: true });
for (const name of ["cl100k_base", "o200k_base"]) {
  const v = loadEncoding(name);
  checkBpe(v, mulberry32(7));
  const texts = buildTexts(mulberry32(12345));
  const invalid = buildInvalid(mulberry32(54321));
  const vectors = makeVectors(v, texts, invalid);
  const nIds = vectors.reduce((a, x) => a + x.ids.length, 0);
  const nBytes = vectors.reduce((a, x) => a + Buffer.from(x.text_b64, "base64").length, 0);
  writeZst(path.join(outDir, `${name}.tok.json.zst`), tokJson(v));
  writeZst(
    path.join(outDir, `${name}.vectors.json.zst`),
    JSON.stringify({
      encoding: name,
      pattern: "V1",
      tiktoken: tiktokenVersion,
      note: "text_b64: the input bytes; ids: tiktoken's tokens (invalid UTF-8: see make_vectors.mjs)",
      vectors,
    }),
  );
  console.log(`${name}: ${v.regular.length} regular + ${Object.keys(v.specials).length} special tokens; ` +
              `${vectors.length} vectors, ${nBytes} bytes of text, ${nIds} ids`);
  // (no enc.free(): a failed decode_single_token_bytes above leaves the object borrowed)
}
