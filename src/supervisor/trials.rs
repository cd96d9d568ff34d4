//! Learning trial boundaries from a worker's output lines. Pure: lines and times in, boundaries
//! out, so the same parser serves live runs, `attach --log` and tests.
//!
//! Three syntaxes: memwarden's marker protocol, Optuna's own log lines (no change to the worker)
//! and a user regex. Optuna reports a trial only when it ends, so, as for a sequential worker, a
//! trial is taken to start where the worker's previous trial ended (or where the worker started).

use crate::recording::{EndMemory, EndReader, TrialSource};
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq)]
pub enum TrialBoundary {
    Start {
        t_ns: u64,
        trial: String,
        params: BTreeMap<String, Value>,
        source: TrialSource,
    },
    End {
        t_ns: u64,
        trial: String,
        state: String,
        value: Option<Value>,
        /// Memory the worker read itself and put on its end marker (the helper's
        /// `memwarden_anon=… memwarden_file=… memwarden_shmem=…`), or the harness as the line
        /// arrived.
        memory: Option<EndMemory>,
    },
}

/// Per-worker parser state.
#[derive(Debug)]
pub struct TrialParser {
    regex: Option<Regex>,
    /// Once a worker speaks the marker protocol, its Optuna lines are not counted twice.
    seen_marker: bool,
    /// Where the next sequential trial starts.
    last_end_ns: u64,
    open: Option<String>,
    /// Memory the worker read at a trial's end, said on the line before that end's.
    pending_memory: Option<(String, EndMemory)>,
}

static OPTUNA: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"Trial (?P<n>\d+) (?P<what>finished with values?:? (?P<value>\[[^\]]*\]|\S+?) and parameters: (?P<p1>\{.*?\})\.?(?: Best is|\s*$)|pruned\.|failed(?: with parameters: (?P<p2>\{.*?\}) because)?)",
    )
    .expect("bug: the Optuna pattern is valid")
});

/// The memory a worker read itself at its trial's end (the helper's marker fields, in bytes):
/// taken out of the marker's fields, all three or none.
fn own_memory(pairs: &mut BTreeMap<String, Value>) -> Option<EndMemory> {
    let mut take = |name: &str| pairs.remove(name).and_then(|v| v.as_u64());
    let (anon, file, shmem) = (
        take("memwarden_anon"),
        take("memwarden_file"),
        take("memwarden_shmem"),
    );
    Some(EndMemory {
        anon_bytes: anon?,
        file_bytes: file?,
        shmem_bytes: shmem?,
        read_by: EndReader::Worker,
        delay_ns: 0,
    })
}

impl TrialParser {
    /// `regex`, when given, replaces the marker and Optuna syntaxes. `started_ns` is when the
    /// worker started (the start of its first sequential trial).
    pub fn new(regex: Option<Regex>, started_ns: u64) -> Self {
        Self {
            regex,
            seen_marker: false,
            last_end_ns: started_ns,
            open: None,
            pending_memory: None,
        }
    }

    pub fn on_line(&mut self, line: &str, t_ns: u64) -> Vec<TrialBoundary> {
        // The tracer's `MEMWARDEN trial_memory N memwarden_anon=…` comes just before Optuna's
        // "Trial N finished" line (its log handler runs first): the memory goes with that end.
        if let Some(at) = line.find("MEMWARDEN trial_memory ") {
            let mut words = line[at + "MEMWARDEN trial_memory ".len()..].split_ascii_whitespace();
            if let Some(trial) = words.next() {
                let mut pairs: BTreeMap<String, Value> = words
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| (k.to_string(), parse_python_value(v)))
                    .collect();
                self.pending_memory = own_memory(&mut pairs).map(|m| (trial.to_string(), m));
            }
            return Vec::new();
        }
        let mut found = self.boundaries(line, t_ns);
        let ends = found.iter().any(|b| matches!(b, TrialBoundary::End { .. }));
        if let Some((trial, memory)) = self.pending_memory.take_if(|_| ends) {
            for boundary in &mut found {
                if let TrialBoundary::End {
                    trial: ended,
                    memory: slot @ None,
                    ..
                } = boundary
                {
                    if *ended == trial {
                        *slot = Some(memory);
                    }
                }
            }
        }
        for boundary in &mut found {
            if let TrialBoundary::Start { params, .. } = boundary {
                bound_params(params);
            }
        }
        found
    }

    fn boundaries(&mut self, line: &str, t_ns: u64) -> Vec<TrialBoundary> {
        if let Some(regex) = &self.regex {
            let Some(caps) = regex.captures(line) else {
                return Vec::new();
            };
            return self.parse_regex_match(regex.clone(), &caps, t_ns);
        }
        if let Some(at) = line.find("MEMWARDEN trial_") {
            if let Some(boundaries) = self.parse_marker(&line[at + "MEMWARDEN ".len()..], t_ns) {
                self.seen_marker = true;
                return boundaries;
            }
        }
        if !self.seen_marker && line.contains("Trial ") {
            if let Some(caps) = OPTUNA.captures(line) {
                let what = &caps["what"];
                let state = if what.starts_with("finished") {
                    "complete"
                } else if what.starts_with("pruned") {
                    "pruned"
                } else {
                    "failed"
                };
                let params = caps
                    .name("p1")
                    .or(caps.name("p2"))
                    .map(|m| parse_python_dict(m.as_str()))
                    .unwrap_or_default();
                let value = caps.name("value").map(|v| parse_python_value(v.as_str()));
                return self.sequential(
                    &caps["n"],
                    params,
                    state,
                    value,
                    TrialSource::Optuna,
                    t_ns,
                );
            }
        }
        Vec::new()
    }

    fn parse_marker(&mut self, rest: &str, t_ns: u64) -> Option<Vec<TrialBoundary>> {
        let mut words = rest.split_ascii_whitespace();
        let verb = words.next()?;
        let trial = words.next()?.to_string();
        let pairs: BTreeMap<String, Value> = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), parse_python_value(v)))
            .collect();
        match verb {
            "trial_start" => {
                self.open = Some(trial.clone());
                Some(vec![TrialBoundary::Start {
                    t_ns,
                    trial,
                    params: pairs,
                    source: TrialSource::Marker,
                }])
            }
            "trial_end" => {
                let mut pairs = pairs;
                let state = match pairs.remove("status").or_else(|| pairs.remove("state")) {
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    None => "complete".into(),
                };
                let value = pairs.remove("value");
                let memory = own_memory(&mut pairs);
                self.open = None;
                self.last_end_ns = t_ns;
                Some(vec![TrialBoundary::End {
                    t_ns,
                    trial,
                    state,
                    value,
                    memory,
                }])
            }
            _ => None,
        }
    }

    fn parse_regex_match(
        &mut self,
        regex: Regex,
        caps: &regex::Captures,
        t_ns: u64,
    ) -> Vec<TrialBoundary> {
        let trial = caps.name("trial").map(|m| m.as_str().to_string());
        let mut params = BTreeMap::new();
        for name in regex.capture_names().flatten() {
            if !matches!(name, "trial" | "phase" | "state" | "value") {
                if let Some(m) = caps.name(name) {
                    params.insert(name.to_string(), parse_python_value(m.as_str()));
                }
            }
        }
        let value = caps.name("value").map(|m| parse_python_value(m.as_str()));
        let state = caps
            .name("state")
            .map_or("complete", |m| m.as_str())
            .to_string();
        let phase = caps.name("phase").map(|m| m.as_str().to_ascii_lowercase());
        match phase.as_deref() {
            Some("start" | "begin" | "started" | "begins") => {
                let trial = trial.unwrap_or_else(|| self.next_id());
                self.open = Some(trial.clone());
                vec![TrialBoundary::Start {
                    t_ns,
                    trial,
                    params,
                    source: TrialSource::Regex,
                }]
            }
            Some("end" | "finish" | "finished" | "done" | "ended") => {
                let trial = trial
                    .or_else(|| self.open.clone())
                    .unwrap_or_else(|| self.next_id());
                self.open = None;
                self.last_end_ns = t_ns;
                vec![TrialBoundary::End {
                    t_ns,
                    trial,
                    state,
                    value,
                    memory: None,
                }]
            }
            _ => {
                let trial = trial.unwrap_or_else(|| self.next_id());
                self.sequential(&trial, params, &state, value, TrialSource::Regex, t_ns)
            }
        }
    }

    fn next_id(&self) -> String {
        format!("t{}", self.last_end_ns)
    }

    /// A trial reported only at its end: it ran since the previous one ended.
    fn sequential(
        &mut self,
        trial: &str,
        params: BTreeMap<String, Value>,
        state: &str,
        value: Option<Value>,
        source: TrialSource,
        t_ns: u64,
    ) -> Vec<TrialBoundary> {
        let start = TrialBoundary::Start {
            t_ns: self.last_end_ns.min(t_ns),
            trial: trial.to_string(),
            params,
            source,
        };
        self.last_end_ns = t_ns;
        vec![
            start,
            TrialBoundary::End {
                t_ns,
                trial: trial.to_string(),
                state: state.into(),
                value,
                memory: None,
            },
        ]
    }
}

/// Parses a Python dict literal as Optuna prints it: `{'lr': 0.01, 'opt': 'adam', 'n': None}`.
/// Values it cannot read are kept as their text, never dropped.
pub fn parse_python_dict(text: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    for item in split_top_level(inner) {
        let Some((key, value)) = split_key(&item) else {
            continue;
        };
        out.insert(unquote(key.trim()), parse_python_value(value.trim()));
    }
    out
}

/// One Python literal: a number, a quoted string, True/False/None, or a list/tuple of those.
pub fn parse_python_value(text: &str) -> Value {
    let text = text.trim();
    match text {
        "True" | "true" => return Value::Bool(true),
        "False" | "false" => return Value::Bool(false),
        "None" | "null" => return Value::Null,
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(x) = text.parse::<f64>() {
        if let Some(n) = serde_json::Number::from_f64(x) {
            return Value::Number(n);
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() >= 2
        && matches!(
            (bytes[0], bytes[bytes.len() - 1]),
            (b'[', b']') | (b'(', b')')
        )
    {
        return Value::Array(
            split_top_level(&text[1..text.len() - 1])
                .iter()
                .map(|s| parse_python_value(s))
                .collect(),
        );
    }
    Value::String(unquote(text))
}

fn unquote(text: &str) -> String {
    let b = text.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        let inner = &text[1..text.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    text.to_string()
}

/// Splits on commas that are outside quotes and brackets.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut escaped) = (0i32, None::<char>, false);
    let mut current = String::new();
    for c in text.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' | '(' | '{' => depth += 1,
                ']' | ')' | '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            },
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts
}

/// Splits `'key': value` at the first colon outside the quoted key.
fn split_key(item: &str) -> Option<(&str, &str)> {
    let trimmed = item.trim_start();
    let offset = item.len() - trimmed.len();
    let first = trimmed.chars().next()?;
    let key_end = if first == '\'' || first == '"' {
        trimmed[1..].find(first)? + 2
    } else {
        trimmed.find(':')?
    };
    let colon = trimmed[key_end..].find(':')? + key_end;
    Some((&item[offset..offset + key_end], &trimmed[colon + 1..]))
}

/// Parameters kept per trial, at most (the first by name); the rest are counted in
/// [`PARAMS_DROPPED`].
pub const MAX_PARAMS: usize = 1024;
/// Longest parameter name and value kept, in bytes (longer ones are cut and end in `…`).
pub const MAX_PARAM_NAME: usize = 128;
pub const MAX_PARAM_VALUE: usize = 1024;
/// The parameter that says how many a trial had beyond [`MAX_PARAMS`].
pub const PARAMS_DROPPED: &str = "memwarden_params_dropped";

/// Bounds what one trial's parameters cost downstream (events, tables, analysis): a worker
/// that prints 100,000 parameters, or one of a megabyte, is recorded with the first
/// [`MAX_PARAMS`], each cut to its limits, and a count of the rest.
pub fn bound_params(params: &mut BTreeMap<String, Value>) {
    let over = params.len().saturating_sub(MAX_PARAMS);
    if let Some(first_dropped) = params.keys().nth(MAX_PARAMS).cloned() {
        drop(params.split_off(&first_dropped));
    }
    let cut = |text: &str, limit: usize| {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    };
    if params.keys().any(|k| k.len() > MAX_PARAM_NAME) {
        *params = std::mem::take(params)
            .into_iter()
            .map(|(k, v)| match k.len() > MAX_PARAM_NAME {
                true => (cut(&k, MAX_PARAM_NAME), v),
                false => (k, v),
            })
            .collect();
    }
    for value in params.values_mut() {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Array(_) | Value::Object(_) => value.to_string(),
            _ => continue,
        };
        if text.len() > MAX_PARAM_VALUE {
            *value = Value::String(cut(&text, MAX_PARAM_VALUE));
        }
    }
    if over > 0 {
        params.insert(PARAMS_DROPPED.into(), Value::from(over as u64));
    }
}

#[cfg(test)]
mod tests;
