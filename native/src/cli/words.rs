//! Splitting a typed line into words, and quoting words back, for the REPL.
//!
//! The rules are a small subset of the POSIX shell's, enough to put spaces and quotes
//! into keys and values: words are separated by spaces or tabs; `"double quotes"` keep
//! spaces and take the escapes `\"` and `\\`; `'single quotes'` keep everything as
//! written; outside quotes a backslash makes the next character literal. Quotes may
//! sit inside a word (`a"b c"d` is one word, `ab cd`) and `""` is an empty word. There
//! is deliberately no `#` comment, no variables and no globbing: a value like `#1` or
//! `$5` is just a value. (The REPL skips lines whose first non-blank is `#`.)

use super::data::Usage;

/// Splits `line` into words; an unterminated quote or a trailing backslash is an error.
pub fn split_words(line: &str) -> Result<Vec<String>, Usage> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            match c {
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\')) => {
                            word.extend(chars.next());
                        }
                        Some(c) => word.push(c),
                        None => return Err(Usage("unterminated \" quote".into())),
                    }
                },
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(Usage("unterminated ' quote".into())),
                    }
                },
                '\\' => match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(Usage("a line cannot end with \\".into())),
                },
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

/// `word` as [`split_words`] reads it back: unchanged when it is plain, else in double
/// quotes with `"` and `\` escaped.
pub fn quote_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '\\'));
    if plain {
        return word.to_string();
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('"');
    for c in word.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    #[test]
    fn plain_words_split_on_any_run_of_blanks() {
        assert_eq!(split("  set users\talice   admin "), ["set", "users", "alice", "admin"]);
        assert!(split("").is_empty());
        assert!(split("   \t ").is_empty());
    }

    #[test]
    fn double_quotes_keep_spaces_and_take_two_escapes() {
        assert_eq!(split(r#"set k "hello world""#), ["set", "k", "hello world"]);
        assert_eq!(split(r#""say \"hi\"""#), [r#"say "hi""#]);
        assert_eq!(split(r#""a\\b""#), [r"a\b"]);
        assert_eq!(split(r#""a\nb""#), [r"a\nb"], "other escapes stay as written");
        assert_eq!(split(r#"set k """#), ["set", "k", ""]);
    }

    #[test]
    fn single_quotes_and_backslashes() {
        assert_eq!(split(r"'it is \ raw'"), [r"it is \ raw"]);
        assert_eq!(split(r#"'say "hi"'"#), [r#"say "hi""#]);
        assert_eq!(split(r"a\ b c"), ["a b", "c"]);
        assert_eq!(split(r"\'"), ["'"]);
    }

    #[test]
    fn quotes_join_with_the_rest_of_the_word() {
        assert_eq!(split(r#"a"b c"d e"#), ["ab cd", "e"]);
        assert_eq!(split(r#"x"y"z"#), ["xyz"]);
    }

    #[test]
    fn hash_and_dollar_are_ordinary() {
        assert_eq!(split("set tags #rust $5"), ["set", "tags", "#rust", "$5"]);
    }

    #[test]
    fn unbalanced_input_is_an_error() {
        assert!(split_words(r#"set k "open"#).unwrap_err().0.contains("unterminated"));
        assert!(split_words("set k 'open").unwrap_err().0.contains("unterminated"));
        assert!(split_words(r"set k v\").is_err());
    }

    #[test]
    fn quote_word_round_trips() {
        for word in ["plain", "", "two words", r#"say "hi""#, r"back\slash", "it's", "tab\there"] {
            let line = format!("x {} y", quote_word(word));
            assert_eq!(split(&line), ["x", word, "y"], "{line}");
        }
        assert_eq!(quote_word("alice"), "alice");
        assert_eq!(quote_word("a b"), "\"a b\"");
    }
}
