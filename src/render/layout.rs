//! Wrapping tokens into lines of monospace cells. The export's PNG and the app's text view
//! share it, so a token is where the user expects it in both.

/// One token's place: line, first column and width in cells, and the text to show.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub index: usize,
    pub line: usize,
    pub col: usize,
    pub width: usize,
    pub text: String,
}

/// How a token shows: line breaks and tabs become visible marks, other control characters dots;
/// a token with no text of its own (the rest of a character another token starts, an empty
/// special token) is a blank cell, so it can still be seen and clicked.
pub fn display_text(token: &str) -> String {
    let mut s: String = token
        .chars()
        .map(|c| match c {
            '\n' => '\u{21b5}',
            '\t' => '\u{2192}',
            c if c.is_control() => '\u{00b7}',
            c => c,
        })
        .collect();
    if s.is_empty() {
        s.push(' ');
    }
    s
}

/// How many monospace cells a token's text takes: two for each wide (East Asian) character, whose
/// glyph is about twice as wide as a Latin one (Unicode's East Asian Width, as terminals count),
/// none for combining marks; at least one.
pub fn cells_of(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text).max(1)
}

/// The start of `text` that fits in `cells` cells (a token wider than a line is cut).
pub fn fit(text: &str, cells: usize) -> String {
    let mut used = 0;
    text.chars()
        .take_while(|&c| {
            used += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
            used <= cells
        })
        .collect()
}

/// Lays tokens out in lines of at most `columns` cells; a token containing a newline ends its
/// line, a token wider than a line gets a line of its own (and is cut when drawn). Lines break
/// between words where they can: a subword tokenizer cuts a word into pieces, and a line that
/// ended between two of them (`Weng e` / `arns`) had the word read as two. A word that would
/// overflow goes to the next line whole, unless it is longer than a line. A run of
/// blank line-break tokens shares one line of ↵ marks and ends it once: otherwise every blank
/// line costs a picture line, and 20 000 `"\n"` tokens make a picture 400 000 pixels tall.
/// Traces of one-character tokens (a character-level policy) get a blank cell between tokens, or
/// their backgrounds and outlines run together into one unreadable bar. A line that wrapped
/// starts without the space its first token carries (byte-level BPE's `Ġclips`): the break
/// stands for that space, as in any wrapped text, and the lines keep one left edge (they had
/// started a cell in wherever the word at the break held its space). Where the trace has space
/// tokens of their own (Llama 3's and Qwen's tokenizers write the space before a number as one),
/// the last column is kept for them, so that one ends its line instead of starting the next; a
/// token of several spaces (code's alignment) that runs past the edge is cut to the cells left.
/// Indentation joined to a line break (`"\n    "`) starts the next line, not the break's cells.
pub fn wrap(tokens: &[String], columns: usize) -> Vec<Cell> {
    let columns = columns.max(8);
    let kept = usize::from(tokens.iter().any(|t| shows_blank(t)));
    let chars: usize = tokens.iter().map(|t| t.chars().count().max(1)).sum();
    let gap = usize::from(!tokens.is_empty() && chars * 10 <= tokens.len() * 12);
    let mut cells = Vec::with_capacity(tokens.len());
    let (mut line, mut col) = (0usize, 0usize);
    // The first token of the word being laid out (into `cells`).
    let mut word = 0;
    for (index, tok) in tokens.iter().enumerate() {
        let indent = indent_after_break(tok);
        let mut text = display_text(indent.map_or(tok, |(head, _)| head));
        let mut width = cells_of(&text).min(columns);
        let joins = col > 0 && index > 0 && !crate::subword::word_break(&tokens[index - 1], tok);
        if !joins {
            word = index;
        }
        let blank = shows_blank(tok);
        let room = if blank { columns } else { columns - kept };
        if blank && col > 0 && col < room && col + width > room {
            // Spaces that run past the edge end their line, cut to the cells left (they show
            // nothing to lose), rather than start the next one a few blank cells in.
            width = room - col;
            text = fit(&text, width);
        }
        if col > 0 && col + width > room {
            line += 1;
            let start = cells.get(word).filter(|_| joins).map_or(0, |c: &Cell| c.col);
            if start > 0 && col - start + width <= room {
                let first = &mut cells[word];
                let cut = start + first.width;
                (first.text, first.width) = without_leading_space(std::mem::take(&mut first.text), first.width);
                let cut = cut - first.width;
                (first.line, first.col) = (line, 0);
                for c in &mut cells[word + 1..] {
                    (c.line, c.col) = (line, c.col - cut);
                }
                col -= cut;
            } else {
                (col, word) = (0, index);
                (text, width) = without_leading_space(text, width);
            }
        }
        cells.push(Cell { index, line, col, width, text });
        col += width + gap;
        let run_goes_on = is_blank_break(tok) && tokens.get(index + 1).is_some_and(|t| is_blank_break(t));
        if tok.contains('\n') && !run_goes_on {
            line += 1;
            // Code's indentation, which a tokenizer joins to the line break before it.
            col = indent.map_or(0, |(_, cells)| cells.min(columns / 2));
        }
    }
    cells
}

/// A token that ends in a line break and the white space after it (`"\n    "`: byte-level BPE
/// joins code's indentation to the break): the part up to the break, and how many cells the
/// indentation takes (a tab four). The indentation starts the next line, where the code has it;
/// drawn with the break it had shown as blank cells after the ↵, and the line below started at
/// its left edge: `    s = 0` read as ` s = 0`.
fn indent_after_break(tok: &str) -> Option<(&str, usize)> {
    let at = tok.rfind('\n')? + 1;
    let tail = &tok[at..];
    let blank = !tail.is_empty() && tail.chars().all(|c| c == '\t' || (c.is_whitespace() && !c.is_control()));
    blank.then(|| (&tok[..at], tail.chars().map(|c| if c == '\t' { 4 } else { cells_of(c.encode_utf8(&mut [0; 4])) }).sum()))
}

/// A line's first token as it shows there: without the white space it starts with, unless that
/// is all it holds (a space token stays a blank cell, to be seen and clicked).
fn without_leading_space(text: String, width: usize) -> (String, usize) {
    match text.trim_start() {
        rest if rest.len() < text.len() && !rest.is_empty() => (rest.to_string(), cells_of(rest).min(width)),
        _ => (text, width),
    }
}

/// A token that shows as a blank cell: spaces only (line breaks and tabs show as marks), or none.
fn shows_blank(tok: &str) -> bool {
    tok.chars().all(|c| c.is_whitespace() && !c.is_control())
}

/// A token that is only white space with a line break in it.
fn is_blank_break(tok: &str) -> bool {
    tok.contains('\n') && tok.chars().all(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wide characters take two cells, so a Chinese token's box holds its glyphs and the next
    /// token starts after them.
    #[test]
    fn wide_characters_take_two_cells() {
        let toks: Vec<String> = ["问题", "：", "a", "é", "e\u{301}"].iter().map(|s| s.to_string()).collect();
        let c = wrap(&toks, 80);
        assert_eq!(c.iter().map(|c| c.width).collect::<Vec<_>>(), [4, 2, 1, 1, 1]);
        assert_eq!(c.iter().map(|c| c.col).collect::<Vec<_>>(), [0, 4, 6, 7, 8]);
        assert_eq!((fit("问题", 4), fit("问题", 3), fit("abc", 2)), ("问题".into(), "问".into(), "ab".into()));
    }

    #[test]
    fn wraps_and_breaks() {
        let toks: Vec<String> = ["ab", "cd\n", "efghij", "k"].iter().map(|s| s.to_string()).collect();
        let c = wrap(&toks, 8);
        assert_eq!((c[0].line, c[0].col), (0, 0));
        assert_eq!((c[1].line, c[1].col), (0, 2));
        assert_eq!(c[1].text, "cd\u{21b5}");
        assert_eq!((c[2].line, c[2].col), (1, 0));
        assert_eq!((c[3].line, c[3].col), (1, 6));
    }

    /// A word cut into subword pieces goes to the next line whole; one longer than a line
    /// breaks where it must; punctuation stays with its word.
    #[test]
    fn lines_break_between_words() {
        let toks = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let at = |c: &[Cell]| c.iter().map(|c| (c.line, c.col)).collect::<Vec<_>>();
        let c = wrap(&toks(&["Weng", " e", "arns", " 12", ","]), 8);
        assert_eq!(at(&c), [(0, 0), (1, 0), (1, 1), (2, 0), (2, 2)]);
        let c = wrap(&toks(&["a", " bbbb", "cccc", "dd", "eeee", "ff"]), 8);
        assert_eq!(at(&c), [(0, 0), (0, 1), (1, 0), (1, 4), (2, 0), (2, 4)]);
        let c = wrap(&toks(&["abc ", "defgh", "ij"]), 8);
        assert_eq!(at(&c), [(0, 0), (1, 0), (1, 5)]);
    }

    /// A wrapped line starts at its left edge: its first token shows without the space it
    /// carries, whether it starts the line or its word was moved down whole; a space token, the
    /// trace's first token and a line after a line break keep theirs.
    #[test]
    fn a_wrapped_line_starts_without_its_first_tokens_space() {
        let toks = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        fn shown(c: &[Cell]) -> Vec<(usize, usize, usize, &str)> {
            c.iter().map(|c| (c.line, c.col, c.width, c.text.as_str())).collect()
        }
        let c = wrap(&toks(&[" To", " sell", " clips", " to", " friends"]), 10);
        assert_eq!(shown(&c), [(0, 0, 3, " To"), (0, 3, 5, " sell"), (1, 0, 5, "clips"), (1, 5, 3, " to"), (2, 0, 7, "friends")]);
        let c = wrap(&toks(&["Weng", " e", "arns", " 12"]), 8);
        assert_eq!(shown(&c), [(0, 0, 4, "Weng"), (1, 0, 1, "e"), (1, 1, 4, "arns"), (1, 5, 3, " 12")]);
        // A space token of its own (Qwen's and Llama 3's before a number) ends its line in the
        // column kept for it; the number starts the next.
        let c = wrap(&toks(&["a", " bcdef", "g", " ", "12"]), 8);
        assert_eq!(shown(&c), [(0, 0, 1, "a"), (1, 0, 5, "bcdef"), (1, 5, 1, "g"), (1, 6, 1, " "), (2, 0, 2, "12")]);
        let c = wrap(&toks(&["a", " bcde", "f", " ", "12"]), 8);
        assert_eq!(shown(&c), [(0, 0, 1, "a"), (0, 1, 5, " bcde"), (0, 6, 1, "f"), (0, 7, 1, " "), (1, 0, 2, "12")]);
        // Several spaces end their line cut to the cells left; at a line's start they stay whole.
        let c = wrap(&toks(&["abcdef", "    ", "x", "\n", "    ", "y"]), 8);
        assert_eq!(shown(&c), [(0, 0, 6, "abcdef"), (0, 6, 2, "  "), (1, 0, 1, "x"), (1, 1, 1, "\u{21b5}"), (2, 0, 4, "    "), (2, 4, 1, "y")]);
        let c = wrap(&toks(&[" abcdefgh", " ", "x\n", "  indented"]), 9);
        assert_eq!(shown(&c), [(0, 0, 9, " abcdefgh"), (1, 0, 1, " "), (1, 1, 2, "x\u{21b5}"), (2, 0, 9, "  indented")]);
    }

    /// Code's indentation, joined by the tokenizer to the line break before it, indents the
    /// next line (by the cells it takes, a tab four), not the line it breaks; in a run of blank
    /// lines the last break's counts. Text after a break stays with its token.
    #[test]
    fn indentation_joined_to_a_break_starts_the_next_line() {
        let toks = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        fn shown(c: &[Cell]) -> Vec<(usize, usize, usize, &str)> {
            c.iter().map(|c| (c.line, c.col, c.width, c.text.as_str())).collect()
        }
        let c = wrap(&toks(&["def f():", "\n   ", " s", " =", " 0", "\n\t", "return", "\n", "x"]), 40);
        assert_eq!(
            shown(&c),
            [(0, 0, 8, "def f():"), (0, 8, 1, "\u{21b5}"), (1, 3, 2, " s"), (1, 5, 2, " ="), (1, 7, 2, " 0"), (1, 9, 1, "\u{21b5}"), (2, 4, 6, "return"), (2, 10, 1, "\u{21b5}"), (3, 0, 1, "x")]
        );
        let c = wrap(&toks(&["a", "\n  ", "\n    ", "b", "c\n  d"]), 40);
        assert_eq!(shown(&c), [(0, 0, 1, "a"), (0, 1, 1, "\u{21b5}"), (0, 2, 1, "\u{21b5}"), (1, 4, 1, "b"), (1, 5, 5, "c\u{21b5}  d")]);
        // Indentation past half a line is held to half of it.
        let c = wrap(&toks(&["\n".to_string() + &" ".repeat(100), "x".into()].iter().map(String::as_str).collect::<Vec<_>>()), 20);
        assert_eq!((c[1].line, c[1].col), (1, 10));
    }

    #[test]
    fn a_run_of_blank_lines_is_one_line_of_marks() {
        let mut toks: Vec<String> = vec!["a".into()];
        toks.extend(std::iter::repeat_n("\n".to_string(), 1000));
        toks.push("b".into());
        let c = wrap(&toks, 100);
        // 1000 marks (two cells each with the gap) wrap at the width, then the run's one break.
        assert_eq!(c[1].line, 0);
        assert_eq!(c.last().unwrap().line, c[1000].line + 1);
        assert!(c.last().unwrap().line <= 1 + 2000 / 100 + 1, "{}", c.last().unwrap().line);
        // A lone break still ends its line.
        let c = wrap(&["a\n".to_string(), "b".to_string()], 100);
        assert_eq!(c[1].line, 1);
    }

    #[test]
    fn character_tokens_get_a_gap() {
        let toks: Vec<String> = "12+34?".chars().map(String::from).collect();
        let c = wrap(&toks, 8);
        assert_eq!(c.iter().map(|c| (c.line, c.col)).collect::<Vec<_>>(), vec![(0, 0), (0, 2), (0, 4), (0, 6), (1, 0), (1, 2)]);
        assert!(c.iter().all(|c| c.width == 1));
    }
}
