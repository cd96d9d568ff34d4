//! Markdown that worker-controlled text cannot break: log lines, parameter values and command
//! lines are escaped, so a worker cannot inject markup, links or images into a report.

/// Escapes every character that Markdown (CommonMark, GitHub tables and autolinks) gives a
/// meaning inside a line, and folds line breaks, so the text reads literally inside a
/// paragraph, list item or table cell. Worker text never starts a line in a report, so
/// line-start markers (`-`, `1.`, `=`) need no escape.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // `:` stops `http://` autolinks; `.` after `www` stops GitHub's `www.` ones.
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '!' | '|' | '<'
            | '>' | '~' | '&' | ':' => {
                out.push('\\');
                out.push(c);
            }
            '.' if out.to_ascii_lowercase().ends_with("www") => out.push_str("\\."),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A code span for source text (a line of a worker's code): inside one nothing is markup, so
/// it reads verbatim. The fence is longer than any run of backticks in the text.
pub fn code(text: &str) -> String {
    let folded: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let longest = folded.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if folded.starts_with('`') || folded.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{folded}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_markup_reads_literally() {
        let evil = "[click](http://evil) ![x](y) <script>|`rm`|\n# Title www.evil.com train.py";
        let safe = escape(evil);
        assert_eq!(
            safe,
            r"\[click\]\(http\://evil\) \!\[x\]\(y\) \<script\>\|\`rm\`\| \# Title www\.evil.com train.py"
        );
        assert!(!safe.contains('\n'));
    }

    #[test]
    fn code_spans_hold_backticks_and_markup_verbatim() {
        assert_eq!(code("KEPT.append(x)"), "`KEPT.append(x)`");
        assert_eq!(code("a `b` [c](d)"), "``a `b` [c](d)``");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("a\nb"), "`a b`");
    }
}
