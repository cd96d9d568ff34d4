//! The command line's value parsers: each turns one flag's text into its value or one line
//! saying what is wrong with it.

use crate::analysis::gates::GrowthBudget;
use crate::analysis::Kind;
use crate::units::parse_duration;
use std::time::Duration;

/// `--publish-cmd`'s argv (a newtype: clap would take a bare `Vec` for a repeated flag).
#[derive(Debug, Clone, PartialEq)]
pub struct PublishCommand(pub Vec<String>);

pub(super) fn parse_publish_command(text: &str) -> Result<PublishCommand, String> {
    parse_command(text).map(PublishCommand)
}

pub(super) fn parse_budget(text: &str) -> Result<GrowthBudget, String> {
    text.parse()
}

pub(super) fn parse_kind(text: &str) -> Result<Kind, String> {
    text.parse()
}

pub(super) fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(3600) {
        return Err("the interval must be between 1ms and 1h".into());
    }
    Ok(d)
}

pub(super) fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("not a number: {text}"))?;
    if !(0.01..=100.0).contains(&value) {
        return Err("must be between 0.01 and 100 (percent of one core)".into());
    }
    Ok(value)
}

pub(super) fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
            Ok((name.to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?}: write NAME=VALUE")),
    }
}

pub(super) fn parse_regex(text: &str) -> Result<regex::Regex, String> {
    let regex = regex::Regex::new(text).map_err(|e| e.to_string())?;
    if !regex
        .capture_names()
        .flatten()
        .any(|n| n == "trial" || n == "phase")
    {
        return Err("the regex needs a named group (?P<trial>...) or (?P<phase>start|end)".into());
    }
    Ok(regex)
}

/// Parses `--publish-cmd`: a JSON array of strings, e.g. `["rsync", "-a", "{run_dir}", "backup:/runs/"]`.
fn parse_command(text: &str) -> Result<Vec<String>, String> {
    let argv: Vec<String> = serde_json::from_str(text).map_err(|_| {
        format!("{text:?}: write the command as a JSON array of strings, e.g. '[\"rsync\", \"-a\", \"{{run_dir}}\", \"backup:/runs/\"]'")
    })?;
    if argv.is_empty() || argv[0].is_empty() {
        return Err("the publish command is empty".into());
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_checked() {
        assert_eq!(parse_interval("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("fast").is_err());
        assert!(parse_percent("2%").is_ok_and(|p| p == 2.0));
        assert!(parse_percent("0").is_err());
        assert!(parse_regex("no groups").is_err());
        assert!(parse_regex("Epoch (?P<trial>\\d+)").is_ok());
        assert!(parse_command("rsync -a").is_err());
        assert_eq!(
            parse_command(r#"["rsync", "-a", "{run_dir}"]"#),
            Ok(vec!["rsync".into(), "-a".into(), "{run_dir}".into()])
        );
    }
}
