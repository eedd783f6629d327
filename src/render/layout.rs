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

/// How a token shows: line breaks and tabs become visible marks, other control characters dots.
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
        s.push('\u{2205}');
    }
    s
}

/// Lays tokens out in lines of at most `columns` cells; a token containing a newline ends its
/// line, a token wider than a line gets a line of its own (and is cut when drawn). Traces of
/// one-character tokens (a character-level policy) get a blank cell between tokens, or their
/// backgrounds and outlines run together into one unreadable bar.
pub fn wrap(tokens: &[String], columns: usize) -> Vec<Cell> {
    let columns = columns.max(8);
    let chars: usize = tokens.iter().map(|t| t.chars().count().max(1)).sum();
    let gap = usize::from(!tokens.is_empty() && chars * 10 <= tokens.len() * 12);
    let mut cells = Vec::with_capacity(tokens.len());
    let (mut line, mut col) = (0usize, 0usize);
    for (index, tok) in tokens.iter().enumerate() {
        let text = display_text(tok);
        let width = text.chars().count().min(columns);
        if col > 0 && col + width > columns {
            line += 1;
            col = 0;
        }
        cells.push(Cell { index, line, col, width, text });
        col += width + gap;
        if tok.contains('\n') {
            line += 1;
            col = 0;
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn character_tokens_get_a_gap() {
        let toks: Vec<String> = "12+34?".chars().map(String::from).collect();
        let c = wrap(&toks, 8);
        assert_eq!(c.iter().map(|c| (c.line, c.col)).collect::<Vec<_>>(), vec![(0, 0), (0, 2), (0, 4), (0, 6), (1, 0), (1, 2)]);
        assert!(c.iter().all(|c| c.width == 1));
    }
}
