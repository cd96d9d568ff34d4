//! The one redactor: every command line, argument or environment-derived text passes through it
//! before memwarden writes it anywhere (events, the manifest, its own lines, reports, exports,
//! published tables, metrics). It is applied where such text enters memwarden (the process
//! probe, the harness's argv), so nothing downstream can forget it.
//!
//! What it masks, with `***`:
//! - the value of an argument whose name is secret-like, as `--name value`, `--name=value`
//!   or `NAME=value`: a name is split into words at `-`, `_` and `.`, and is secret-like when a
//!   word is one of [`SECRET_WORDS`] or contains one of [`SECRET_PARTS`] (so `--api_key`,
//!   `WANDB_API_KEY`, `--pw`, `--db-password` are, `--keep_grads` and `--passes` are not);
//! - the password of a URL's userinfo in any scheme (`postgresql://optuna:***@db/optuna`);
//! - whatever the patterns of the policy's `[redact] patterns` match (capture group 1 where the
//!   pattern has one, else the whole match), installed once at start by [`install`].
//!
//! It errs towards masking: a value next to an argument named `--key-size` is masked too.

use regex::Regex;
use std::sync::OnceLock;

/// Argument-name words that are secrets whole.
pub const SECRET_WORDS: [&str; 6] = ["pw", "pass", "pwd", "key", "auth", "token"];
/// Parts that make any word a secret's name.
pub const SECRET_PARTS: [&str; 7] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "apikey",
];
const MASK: &str = "***";

static EXTRA: OnceLock<Vec<Regex>> = OnceLock::new();

/// The user's own patterns, from the policy file; set once, before any worker starts. A second
/// call (a test, a soak's next round with the same policy) keeps the first.
pub fn install(patterns: Vec<Regex>) {
    let _ = EXTRA.set(patterns);
}

/// Whether an argument or variable name names a secret.
pub fn secret_name(name: &str) -> bool {
    let name = name.trim_start_matches('-').to_ascii_lowercase();
    name.split(['-', '_', '.'])
        .any(|word| SECRET_WORDS.contains(&word) || SECRET_PARTS.iter().any(|p| word.contains(p)))
}

/// An argv, masked word by word.
pub fn argv(words: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len());
    let mut mask_next = false;
    for word in words {
        if mask_next {
            out.push(MASK.to_string());
            mask_next = false;
            continue;
        }
        match word.split_once('=') {
            Some((name, _)) if secret_name(name) && !name.is_empty() => {
                out.push(format!("{name}={MASK}"));
            }
            _ => {
                mask_next = word.starts_with('-') && secret_name(word);
                out.push(text(word));
            }
        }
    }
    out
}

/// A command line read from /proc (its words joined by spaces), masked like an argv.
pub fn command_line(command: &str) -> String {
    let words: Vec<String> = command.split(' ').map(str::to_string).collect();
    argv(&words).join(" ")
}

/// Free text (an environment value, a line): URL passwords and the user's patterns.
pub fn text(text: &str) -> String {
    let mut out = url_passwords().replace_all(text, "$1***@").into_owned();
    for pattern in EXTRA.get().map(Vec::as_slice).unwrap_or_default() {
        out = pattern
            .replace_all(&out, |c: &regex::Captures| match c.get(1) {
                Some(group) => {
                    let whole = c.get(0).expect("bug: a match has group 0");
                    let (start, end) = (group.start() - whole.start(), group.end() - whole.start());
                    format!(
                        "{}{MASK}{}",
                        &whole.as_str()[..start],
                        &whole.as_str()[end..]
                    )
                }
                None => MASK.to_string(),
            })
            .into_owned();
    }
    out
}

fn url_passwords() -> &'static Regex {
    static URL: OnceLock<Regex> = OnceLock::new();
    URL.get_or_init(|| {
        Regex::new(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]*@")
            .expect("bug: a valid pattern")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn secret_values_are_masked_in_every_form() {
        let line = "python3 w.py --password hunter2 --storage postgresql://optuna:dbpass42@db:5432/optuna \
                    --pw pwshort42 --api_key=apikey42 WANDB_API_KEY=k --token=xyz --lr 0.1 \
                    --keep_grads true --passes 3 https://user@example.com/x";
        assert_eq!(
            argv(&words(line)).join(" "),
            "python3 w.py --password *** --storage postgresql://optuna:***@db:5432/optuna \
             --pw *** --api_key=*** WANDB_API_KEY=*** --token=*** --lr 0.1 \
             --keep_grads true --passes 3 https://user@example.com/x"
        );
        assert_eq!(command_line(line), argv(&words(line)).join(" "));
    }

    #[test]
    fn names_are_judged_by_their_words() {
        for name in [
            "--pw",
            "--api-key",
            "AWS_SECRET_ACCESS_KEY",
            "--db.passwd",
            "-auth",
            "--hf_token",
        ] {
            assert!(secret_name(name), "{name}");
        }
        for name in ["--keep_grads", "--passes", "--monkeys", "--width", "lr"] {
            assert!(!secret_name(name), "{name}");
        }
    }
}
