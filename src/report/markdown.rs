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
}
