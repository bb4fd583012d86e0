//! Tab completion for the REPL: command names for the first word, then the names of
//! the collections seen in the session for commands that take one.

use super::COMMANDS;
use rustyline::{
    completion::Completer, highlight::Highlighter, hint::Hinter, validate::Validator, Helper,
};
use std::collections::BTreeSet;

/// The commands whose first argument is a collection.
const TAKES_COLLECTION: &[&str] = &["set", "get", "del", "scan", "watch", "use"];

/// Tab completion: command names first, then collection names seen in the session.
#[derive(Default)]
pub(super) struct ReplHelper {
    /// The collections to offer.
    pub(super) collections: BTreeSet<String>,
}

/// The completions of the word before `pos`: where it starts and the candidates.
fn complete(line: &str, pos: usize, collections: &BTreeSet<String>) -> (usize, Vec<String>) {
    let before = line.get(..pos).unwrap_or(line);
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let partial = &before[start..];
    let earlier: Vec<&str> = before[..start].split_whitespace().collect();
    let candidates: Vec<String> = match earlier.as_slice() {
        [] => COMMANDS
            .iter()
            .map(|(name, ..)| *name)
            .chain(["exit"])
            .filter(|name| name.starts_with(partial))
            .map(|name| format!("{name} "))
            .collect(),
        [verb] if TAKES_COLLECTION.contains(&verb.to_ascii_lowercase().as_str()) => {
            collections.iter().filter(|c| c.starts_with(partial)).map(|c| format!("{c} ")).collect()
        }
        _ => Vec::new(),
    };
    (start, candidates)
}

impl Completer for ReplHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(complete(line, pos, &self.collections))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_commands_then_collections() {
        let seen = BTreeSet::from(["default".to_string(), "users".into(), "events".into()]);
        assert_eq!(
            complete("s", 1, &seen),
            (0, vec!["set ".into(), "scan ".into(), "stats ".into()])
        );
        assert_eq!(complete("co", 2, &seen), (0, vec!["consistency ".into()]));
        assert_eq!(complete("get u", 5, &seen), (4, vec!["users ".into()]));
        assert_eq!(complete("use ", 4, &seen).1.len(), 3);
        assert_eq!(complete("get users a", 11, &seen), (10, vec![]));
        assert_eq!(complete("stats x", 7, &seen), (6, vec![]));
    }
}
