//! Token text as a reader expects it: subword tokenizers store their pieces in encodings made for
//! the tokenizer, not for people (byte-level BPE writes a space as `Ġ` and a newline as `Ċ`;
//! SentencePiece writes `▁` and `<0x0A>`; WordPiece marks continuations with `##`). One decoder,
//! used by the app, the export's pictures and `--print`, turns each token into the text it
//! stands for. The raw token stays what the trace holds (tooltips, the inspector, the JSON).
//!
//! A character whose UTF-8 bytes are split across tokens is shown on the token that holds its
//! first byte; a token holding only the rest shows nothing of its own.

use serde::{Deserialize, Serialize};

/// How a trace's tokens encode their text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// GPT-2-style byte-level BPE (Llama 3, Qwen, GPT): each byte as one printable character.
    #[value(name = "bytelevel")]
    #[serde(rename = "bytelevel")]
    ByteLevel,
    /// SentencePiece (Llama 2, Mistral, Gemma): `▁` for a space, `<0xNN>` byte fallback.
    #[value(name = "sentencepiece")]
    #[serde(rename = "sentencepiece")]
    SentencePiece,
    /// WordPiece (BERT): `##` joins a piece to the one before it.
    #[value(name = "wordpiece")]
    #[serde(rename = "wordpiece")]
    WordPiece,
    /// The tokens are their own text (character-level or already decoded).
    Raw,
}

impl Tokenizer {
    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::ByteLevel => "bytelevel",
            Tokenizer::SentencePiece => "sentencepiece",
            Tokenizer::WordPiece => "wordpiece",
            Tokenizer::Raw => "raw",
        }
    }

    pub fn parse(name: &str) -> Option<Tokenizer> {
        [Tokenizer::ByteLevel, Tokenizer::SentencePiece, Tokenizer::WordPiece, Tokenizer::Raw].into_iter().find(|t| t.name() == name)
    }

    /// The encoding the tokens show. Byte-level BPE when every token is spelled in its byte
    /// alphabet and space or newline markers are common; SentencePiece when `▁` or byte tokens
    /// are; WordPiece when `##` pieces are; raw otherwise (so a character-level trace, whose
    /// tokens are already text, is left alone).
    pub fn detect(tokens: &[String]) -> Tokenizer {
        if tokens.is_empty() {
            return Tokenizer::Raw;
        }
        let share = |pred: &dyn Fn(&str) -> bool| tokens.iter().filter(|t| pred(t)).count() * 20 >= tokens.len();
        let some = |pred: &dyn Fn(&str) -> bool| tokens.iter().any(|t| pred(t));
        let byte_alphabet = tokens.iter().all(|t| t.chars().all(|c| byte_of(c).is_some()));
        if byte_alphabet && share(&|t| t.starts_with('Ġ') || t.contains('Ċ')) {
            Tokenizer::ByteLevel
        } else if share(&|t| t.contains('▁')) || some(&|t| byte_token(t).is_some()) {
            Tokenizer::SentencePiece
        } else if share(&|t| t.starts_with("##") && t.len() > 2) {
            Tokenizer::WordPiece
        } else {
            Tokenizer::Raw
        }
    }

    /// The tokenizer a trace names in its metadata (`tokenizer`), else the detected one.
    pub fn of(tokens: &[String], meta: Option<&str>) -> Tokenizer {
        meta.and_then(Tokenizer::parse).unwrap_or_else(|| Tokenizer::detect(tokens))
    }
}

/// Each token's text under `tokenizer`, one string per token.
/// Whether a line or a step may end between two tokens' texts (as [`decode`] gives them):
/// between words, where either side has white space, not inside a word a tokenizer cut into
/// pieces (`Weng e` / `arns`).
pub fn word_break(before: &str, after: &str) -> bool {
    before.ends_with(char::is_whitespace) || after.starts_with(char::is_whitespace)
}

pub fn decode(tokens: &[String], tokenizer: Tokenizer) -> Vec<String> {
    match tokenizer {
        Tokenizer::Raw => tokens.to_vec(),
        Tokenizer::ByteLevel => from_bytes(tokens.iter().map(|t| t.chars().filter_map(byte_of).collect())),
        Tokenizer::SentencePiece => from_bytes(tokens.iter().map(|t| match byte_token(t) {
            Some(b) => vec![b],
            None => t.replace('▁', " ").into_bytes(),
        })),
        Tokenizer::WordPiece => tokens
            .iter()
            .enumerate()
            .map(|(i, t)| match t.strip_prefix("##") {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ if i == 0 || is_special(t) || tokens.get(i - 1).is_some_and(|p| is_special(p)) => t.clone(),
                _ => format!(" {t}"),
            })
            .collect(),
    }
}

/// `[CLS]`, `<s>` and their kind: shown as they are, without a space before them.
fn is_special(t: &str) -> bool {
    (t.starts_with('[') && t.ends_with(']') || t.starts_with('<') && t.ends_with('>')) && t.len() > 2
}

/// SentencePiece's byte fallback: `<0x0A>` is the byte 0x0A.
fn byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() == 2 { u8::from_str_radix(hex, 16).ok() } else { None }
}

/// Decodes the bytes of all tokens as one UTF-8 stream and gives each character to the token
/// holding its first byte. Invalid bytes become U+FFFD, one per maximal invalid subpart, as
/// Python's and Rust's lossy decoders do, so the text matches the tokenizer's own decode.
fn from_bytes(per_token: impl Iterator<Item = Vec<u8>>) -> Vec<String> {
    let per_token: Vec<Vec<u8>> = per_token.collect();
    let mut owner = Vec::new();
    let mut stream = Vec::new();
    for (k, bytes) in per_token.iter().enumerate() {
        owner.extend(std::iter::repeat_n(k, bytes.len()));
        stream.extend_from_slice(bytes);
    }
    let mut out = vec![String::new(); per_token.len()];
    let mut i = 0;
    while i < stream.len() {
        let (len, ok) = utf8_at(&stream[i..]);
        match ok.then(|| std::str::from_utf8(&stream[i..i + len]).ok()).flatten() {
            Some(c) => out[owner[i]].push_str(c),
            None => out[owner[i]].push(char::REPLACEMENT_CHARACTER),
        }
        i += len;
    }
    out
}

/// The length of the UTF-8 sequence at the start of `b` and whether it is a whole character;
/// when it is not, the length of its maximal invalid subpart (at least 1).
fn utf8_at(b: &[u8]) -> (usize, bool) {
    let (need, second) = match b[0] {
        0x00..=0x7f => return (1, true),
        0xc2..=0xdf => (2, 0x80..=0xbf),
        0xe0 => (3, 0xa0..=0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80..=0xbf),
        0xed => (3, 0x80..=0x9f),
        0xf0 => (4, 0x90..=0xbf),
        0xf1..=0xf3 => (4, 0x80..=0xbf),
        0xf4 => (4, 0x80..=0x8f),
        _ => return (1, false),
    };
    let mut len = 1;
    while len < need {
        let fits = match b.get(len) {
            Some(&c) if len == 1 => second.contains(&c),
            Some(&c) => (0x80..=0xbf).contains(&c),
            None => false,
        };
        if !fits {
            return (len, false);
        }
        len += 1;
    }
    (need, true)
}

const fn printable(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
}

/// The 68 bytes GPT-2 moves to U+0100 onwards, in byte order.
const SHIFTED: [u8; 68] = {
    let mut table = [0u8; 68];
    let (mut b, mut n) = (0u32, 0usize);
    while b < 256 {
        if !printable(b) {
            table[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    table
};

/// GPT-2's byte ↔ character table: printable Latin-1 bytes stand for themselves, the other 68
/// bytes (controls, space, 0x7f–0xa0, 0xad) are moved to U+0100 onwards in byte order.
fn byte_of(c: char) -> Option<u8> {
    let code = c as u32;
    if printable(code) {
        return Some(code as u8);
    }
    SHIFTED.get(code.checked_sub(256)? as usize).copied()
}

/// A token given as its bytes (tiktoken's pieces) spelled as byte-level BPE spells it: `byte_of`
/// read backwards. Nothing of the bytes is lost, and a character split across tokens is joined
/// again by [`decode`], where a piece decoded alone as UTF-8 would show U+FFFD.
pub fn byte_level(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match SHIFTED.iter().position(|&s| s == b) {
            Some(i) => char::from_u32(256 + i as u32).expect("U+0100 onwards are characters"),
            None => char::from(b),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[&str]) -> Vec<String> {
        s.iter().map(|t| t.to_string()).collect()
    }

    /// Every byte spelled and read back, and bytes split mid-character joined by the decoder.
    #[test]
    fn bytes_are_spelled_as_byte_level_bpe_spells_them() {
        let all: Vec<u8> = (0..=255).collect();
        let spelled = byte_level(&all);
        assert_eq!(spelled.chars().map(|c| byte_of(c).unwrap()).collect::<Vec<u8>>(), all);
        assert_eq!(byte_level(b" 48\n"), "Ġ48Ċ");
        // "→" (e2 86 92) cut after its first byte, as tiktoken's pieces can be.
        let pieces = vec![byte_level(b" a \xe2"), byte_level(b"\x86\x92 b")];
        assert_eq!(Tokenizer::detect(&pieces), Tokenizer::ByteLevel);
        assert_eq!(decode(&pieces, Tokenizer::ByteLevel), toks(&[" a →", " b"]));
    }

    #[test]
    fn the_byte_table_is_gpt2s() {
        assert_eq!(byte_of('Ġ'), Some(b' '));
        assert_eq!(byte_of('Ċ'), Some(b'\n'));
        assert_eq!(byte_of('ĉ'), Some(b'\t'));
        assert_eq!(byte_of('Ā'), Some(0));
        assert_eq!(byte_of('a'), Some(b'a'));
        assert_eq!(byte_of('Ń'), Some(0xad));
        assert_eq!(byte_of('Ņ'), None);
        assert_eq!(byte_of('中'), None);
        let all: std::collections::BTreeSet<u8> = (0..512u32).filter_map(char::from_u32).filter_map(byte_of).collect();
        assert_eq!(all.len(), 256, "every byte has one character");
    }

    #[test]
    fn byte_level_bpe_decodes_spaces_newlines_and_split_characters() {
        // "Question: a train\nLet 中文" as GPT-2 writes it, 中 (E4 B8 AD) split over two tokens.
        let t = toks(&["Question", "Ġ:", "Ġa", "Ġtrain", "Ċ", "Let", "Ġä¸", "Ń", "æĸĩ"]);
        assert_eq!(Tokenizer::detect(&t), Tokenizer::ByteLevel);
        let text = decode(&t, Tokenizer::ByteLevel);
        assert_eq!(text, toks(&["Question", " :", " a", " train", "\n", "Let", " 中", "", "文"]));
        assert_eq!(text.concat(), "Question : a train\nLet 中文");
        // The layout breaks the line at the newline and keeps each cell on its own token.
        let cells = crate::render::layout::wrap(&text, 80);
        assert_eq!(cells.iter().map(|c| c.index).collect::<Vec<_>>(), (0..t.len()).collect::<Vec<_>>());
        assert_eq!(cells[4].line, 0);
        assert_eq!(cells[5].line, 1, "the token after Ċ starts a new line");
        assert_eq!(cells[6].text, " 中");
    }

    #[test]
    fn sentencepiece_decodes_its_space_mark_and_byte_fallback() {
        let t = toks(&["▁Hello", "▁world", "<0x0A>", "▁", "<0xE4>", "<0xB8>", "<0xAD>", "!"]);
        assert_eq!(Tokenizer::detect(&t), Tokenizer::SentencePiece);
        let text = decode(&t, Tokenizer::SentencePiece);
        assert_eq!(text, toks(&[" Hello", " world", "\n", " ", "中", "", "", "!"]));
        assert_eq!(decode(&toks(&["<0xFF>", "a"]), Tokenizer::SentencePiece), toks(&["\u{fffd}", "a"]), "an invalid byte is U+FFFD");
        // A cut character is one U+FFFD (its maximal invalid subpart), as lossy decoders give.
        let cut = decode(&toks(&["<0xE4>", "<0xB8>", "A", "<0xF0>", "<0x9F>", "<0x98>"]), Tokenizer::SentencePiece);
        assert_eq!(cut.concat(), String::from_utf8_lossy(&[0xe4, 0xb8, b'A', 0xf0, 0x9f, 0x98]));
        assert_eq!(cut, toks(&["\u{fffd}", "", "A", "\u{fffd}", "", ""]));
    }

    #[test]
    fn wordpiece_joins_continuations() {
        let t = toks(&["[CLS]", "the", "train", "##s", "leave", "##s", "at", "3", "[SEP]"]);
        assert_eq!(Tokenizer::detect(&t), Tokenizer::WordPiece);
        assert_eq!(decode(&t, Tokenizer::WordPiece).concat(), "[CLS]the trains leaves at 3[SEP]");
    }

    #[test]
    fn character_and_plain_traces_stay_as_they_are() {
        let chars = toks(&["1", "2", "+", "3", "4", "=", "\n", ">", "4", "6"]);
        assert_eq!(Tokenizer::detect(&chars), Tokenizer::Raw);
        assert_eq!(decode(&chars, Tokenizer::detect(&chars)), chars);
        let words = toks(&["The", " answer", " is", " 72", "."]);
        assert_eq!(Tokenizer::detect(&words), Tokenizer::Raw);
        // A trace that names its tokenizer is decoded that way, whatever the tokens look like.
        assert_eq!(Tokenizer::of(&words, Some("bytelevel")), Tokenizer::ByteLevel);
        assert_eq!(Tokenizer::of(&words, Some("raw")), Tokenizer::Raw);
    }
}
