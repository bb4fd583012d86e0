//! `dhrt repl`: an interactive shell on one node, with the data commands' syntax.
//!
//! A line is split into words ([`split_words`]: `"double quotes"` keep spaces), then
//! read as a REPL command ([`Line`]) — `use`, `consistency`, `watch`, `help`, `quit` —
//! or else as a data command through [`Command::parse_words_in`], the parser behind
//! `dhrt set/get/del/scan/stats/ring`, with the session's collection where the words
//! name none.
//!
//! On a terminal the shell edits lines with rustyline, keeps its history in
//! `~/.dhrt_history` and completes command and collection names with Tab. When stdin
//! is not a terminal it reads lines as a script: no prompt, results only on stdout,
//! errors on stderr, and the exit status says whether every command succeeded. A
//! missing key prints `(not found)` and is not a failure. In a script a `watch` lasts
//! until the next line arrives (that line only ends it) or the input ends; on a
//! terminal, until Enter or Ctrl-C, which also abandons any other command.

mod complete;

use super::data::{Command, Outcome, Target, Usage};
use super::words::{quote_word, split_words};
use complete::ReplHelper;
use dhrt::client::{Client, ClientError};
use dhrt_core::proto::client::{Consistency, DEFAULT_COLLECTION};
use rustyline::{error::ReadlineError, history::FileHistory, CompletionType, Config, Editor};
use std::{
    collections::BTreeSet,
    future::Future,
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
};
use tokio::sync::mpsc;

/// Every command: its name, usage, what it does and an example — for `help` and Tab.
const COMMANDS: &[(&str, &str, &str, &str)] = &[
    ("set", "set [COLLECTION] KEY VALUE", "write a value", "set users alice \"Alice Smith\""),
    ("get", "get [COLLECTION] KEY", "read a value", "get users alice"),
    ("del", "del [COLLECTION] KEY", "delete a key", "del users alice"),
    ("scan", "scan [COLLECTION] [PREFIX]", "list keys and values, tab-separated", "scan users al"),
    ("watch", "watch [COLLECTION] [PREFIX]", "print changes until Enter or Ctrl-C", "watch users"),
    ("stats", "stats", "the node's counts and background work", "stats"),
    ("ring", "ring", "the ring's members", "ring"),
    ("use", "use [COLLECTION]", "set (or show) the session's collection", "use users"),
    ("consistency", "consistency [LEVEL]", "default, one, quorum, all or N", "consistency all"),
    ("help", "help", "this list", "help"),
    ("quit", "quit", "leave (also exit, Ctrl-D)", "quit"),
];

/// One line of the REPL, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Nothing to do: an empty line or a `#` comment.
    Blank,
    /// A data command, as `dhrt set/get/del/scan/stats/ring` takes it.
    Data(Command),
    /// Print the changes of a collection (keys starting with `prefix`, if given).
    Watch {
        /// The collection.
        collection: String,
        /// Only keys starting with this.
        prefix: Option<String>,
    },
    /// Change the session's collection, or print it when `None`.
    Use(Option<String>),
    /// Change the session's consistency level, or print it when `None`.
    Consistency(Option<Consistency>),
    /// List the commands.
    Help,
    /// Leave the REPL.
    Quit,
}

impl Line {
    /// Parses a typed line; `collection` is the session's, used where the words name
    /// none.
    pub fn parse(line: &str, collection: &str) -> Result<Line, Usage> {
        if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
            return Ok(Line::Blank);
        }
        let words = split_words(line)?;
        let Some((verb, args)) = words.split_first() else { return Ok(Line::Blank) };
        let usage = |want: &str| Usage(format!("usage: {verb} {want}"));
        match verb.to_ascii_lowercase().as_str() {
            "help" | "?" => Ok(Line::Help),
            "quit" | "exit" => Ok(Line::Quit),
            "use" => match args {
                [] => Ok(Line::Use(None)),
                [c] => match dhrt_core::store::validate_collection(c) {
                    Ok(()) => Ok(Line::Use(Some(c.clone()))),
                    Err(e) => Err(Usage(e.to_string())),
                },
                _ => Err(usage("[COLLECTION]")),
            },
            "consistency" => match args {
                [] => Ok(Line::Consistency(None)),
                [level] => level
                    .parse()
                    .map(|c| Line::Consistency(Some(c)))
                    .map_err(|e| Usage(format!("{e}"))),
                _ => Err(usage("[LEVEL]")),
            },
            "watch" => match args {
                [] => Ok(Line::Watch { collection: collection.into(), prefix: None }),
                [c] => Ok(Line::Watch { collection: c.clone(), prefix: None }),
                [c, p] => Ok(Line::Watch { collection: c.clone(), prefix: Some(p.clone()) }),
                _ => Err(usage("[COLLECTION] [PREFIX]")),
            },
            _ => Command::parse_words_in(&words, collection).map(Line::Data),
        }
    }
}

/// The text `help` prints.
pub fn help_text(collection: &str, consistency: Consistency) -> String {
    let mut text = String::from("Commands (put words with spaces in \"double quotes\"):\n");
    for (_, usage, what, example) in COMMANDS {
        text.push_str(&format!("  {usage:<28}  {what:<38}  e.g. {example}\n"));
    }
    text.push_str(&format!(
        "COLLECTION defaults to the session's, now {collection:?}; the consistency level is \
         now {consistency}.\n"
    ));
    text
}

/// Whether the REPL goes on after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// What one REPL session remembers between lines.
struct Session {
    target: Target,
    consistency: Consistency,
    collection: String,
    client: Option<Client>,
    /// Collections named so far, for completion.
    seen: BTreeSet<String>,
    failures: usize,
}

impl Session {
    fn new(target: &Target) -> Session {
        Session {
            target: target.clone(),
            consistency: target.consistency,
            collection: DEFAULT_COLLECTION.into(),
            client: None,
            seen: BTreeSet::from([DEFAULT_COLLECTION.to_string()]),
            failures: 0,
        }
    }

    /// The connection, opened on first use (and again after it failed to open).
    async fn client(&mut self) -> Result<Client, ClientError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let client = self.target.connect().await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    fn prompt(&self) -> String {
        if self.collection == DEFAULT_COLLECTION {
            "dhrt> ".into()
        } else {
            format!("dhrt:{}> ", self.collection)
        }
    }

    /// Parses and runs one line, printing its result to stdout and any error to stderr.
    /// `stop` ends a `watch`; `interrupt` abandons any other command.
    async fn run_line(
        &mut self,
        text: &str,
        stop: impl Future<Output = ()>,
        interrupt: impl Future<Output = ()>,
    ) -> Flow {
        let result = match Line::parse(text, &self.collection) {
            Err(usage) => Err(usage.to_string()),
            Ok(line @ Line::Watch { .. }) => self.execute(line, stop).await,
            Ok(line) => tokio::select! {
                result = self.execute(line, std::future::pending()) => result,
                () = interrupt => Err("interrupted".into()),
            },
        };
        let _ = std::io::stdout().flush();
        result.unwrap_or_else(|e| {
            self.failures += 1;
            eprintln!("error: {e}");
            Flow::Continue
        })
    }

    async fn execute(
        &mut self,
        line: Line,
        stop: impl Future<Output = ()>,
    ) -> Result<Flow, String> {
        let mut out = std::io::stdout();
        let io = |e: std::io::Error| format!("cannot write output: {e}");
        match line {
            Line::Blank => {}
            Line::Quit => return Ok(Flow::Quit),
            Line::Help => {
                write!(out, "{}", help_text(&self.collection, self.consistency)).map_err(io)?;
            }
            Line::Use(None) => writeln!(out, "{}", self.collection).map_err(io)?,
            Line::Use(Some(collection)) => {
                self.seen.insert(collection.clone());
                self.collection = collection;
            }
            Line::Consistency(None) => writeln!(out, "{}", self.consistency).map_err(io)?,
            Line::Consistency(Some(level)) => self.consistency = level,
            Line::Data(command) => {
                if let Some(c) = command.collection() {
                    self.seen.insert(c.to_string());
                }
                let client = self.client().await.map_err(|e| e.to_string())?;
                match command.run(&client, self.consistency, &mut out).await {
                    Ok(Outcome::Done) => {}
                    Ok(Outcome::NotFound(_)) => writeln!(out, "(not found)").map_err(io)?,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Line::Watch { collection, prefix } => {
                self.seen.insert(collection.clone());
                self.watch(&collection, prefix, stop).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// Prints each change as the REPL line that would make it (`set C K V`, `del C K`)
    /// until `stop` resolves or the watch ends.
    async fn watch(
        &mut self,
        collection: &str,
        prefix: Option<String>,
        stop: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let client = self.client().await.map_err(|e| e.to_string())?;
        let prefix = prefix.map(|p| bytes::Bytes::from(p.into_bytes()));
        let mut watch = client.watch(collection, prefix).await.map_err(|e| e.to_string())?;
        if std::io::stdin().is_terminal() {
            eprintln!("watching {collection}: press Enter or Ctrl-C to stop");
        }
        tokio::pin!(stop);
        let mut moves = 0;
        loop {
            tokio::select! {
                () = &mut stop => return Ok(()),
                event = watch.next() => match event.map_err(|e| e.to_string())? {
                    None => return Err("the watch ended: the client closed".into()),
                    Some(ev) => {
                        // The watch outlives its node: say when it moved, since changes
                        // made during the move may not have been shown.
                        if watch.interruptions() > moves {
                            moves = watch.interruptions();
                            eprintln!("(the watch moved to another node: changes made while it moved may be missing)");
                        }
                        let word = |b: &[u8]| quote_word(&String::from_utf8_lossy(b));
                        let line = match &ev.value {
                            Some(v) => format!("set {} {} {}", ev.collection, word(&ev.key), word(v)),
                            None => format!("del {} {}", ev.collection, word(&ev.key)),
                        };
                        let mut out = std::io::stdout();
                        writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
                    }
                },
            }
        }
    }
}

/// Runs the REPL against `target` until `quit`, Ctrl-D or the end of stdin. Reading a
/// script from a pipe, fails when any of its commands failed.
pub fn run(target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    // One worker keeps the connection served while the shell waits for a line.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut session = Session::new(target);
    if std::io::stdin().is_terminal() {
        interactive(&mut session, &runtime)
    } else {
        let failures = runtime.block_on(script(&mut session));
        match failures {
            0 => Ok(()),
            1 => Err("1 command failed".into()),
            n => Err(format!("{n} commands failed").into()),
        }
    }
}

/// Reads lines from stdin (a pipe or file) and runs them; a `watch` lasts until the
/// next line. Returns how many commands failed.
async fn script(session: &mut Session) -> usize {
    let (tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("error: cannot read stdin: {e}");
                    break;
                }
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let next_line = async {
            let _ = lines.recv().await;
        };
        if session.run_line(&line, next_line, std::future::pending()).await == Flow::Quit {
            break;
        }
    }
    session.failures
}

/// The line editor loop on a terminal.
fn interactive(
    session: &mut Session,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::builder().completion_type(CompletionType::List).build();
    let mut editor: Editor<ReplHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ReplHelper::default()));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    match runtime.block_on(session.client()) {
        Ok(_) => println!("connected to {}; type help for the commands", session.target.node),
        Err(e) => eprintln!("error: {e}"),
    }
    loop {
        if let Some(helper) = editor.helper_mut() {
            helper.collections.clone_from(&session.seen);
        }
        match editor.readline(&session.prompt()) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                let stop = async {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        () = enter_pressed() => {}
                    }
                };
                let interrupt = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                if runtime.block_on(session.run_line(&line, stop, interrupt)) == Flow::Quit {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// `~/.dhrt_history`, when `HOME` is set.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".dhrt_history"))
}

/// Resolves when a line is typed on the terminal (between prompts, where the line
/// editor is not reading). Stops looking for one, without reading, once dropped.
async fn enter_pressed() {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stopped = Arc::new(AtomicBool::new(false));
    let _guard = StopOnDrop(stopped.clone());
    let typed = tokio::task::spawn_blocking(move || {
        while !stopped.load(Ordering::Relaxed) {
            let mut fd = libc::pollfd { fd: libc::STDIN_FILENO, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, and its count.
            let ready = unsafe { libc::poll(&mut fd, 1, 100) };
            if ready > 0 {
                let mut buf = [0u8; 1024];
                // SAFETY: reads into a buffer of the given length. The terminal is in
                // line mode here, so this takes the one line typed.
                let n =
                    unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
                return n >= 0;
            }
            if ready < 0
                && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                return false;
            }
        }
        false
    })
    .await;
    if !matches!(typed, Ok(true)) {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Line {
        Line::parse(line, "default").unwrap()
    }

    #[test]
    fn data_commands_use_the_session_collection() {
        let set = Line::parse("set alice \"Alice Smith\"", "users").unwrap();
        let want = Command::Set {
            collection: "users".into(),
            key: "alice".into(),
            value: "Alice Smith".into(),
            ttl: None,
        };
        assert_eq!(set, Line::Data(want));
        assert_eq!(
            Line::parse("get other k", "users").unwrap(),
            Line::Data(Command::Get { collection: "other".into(), key: "k".into() })
        );
        assert_eq!(parse("STATS"), Line::Data(Command::Stats));
    }

    #[test]
    fn repl_commands() {
        assert_eq!(parse(""), Line::Blank);
        assert_eq!(parse("  # a comment"), Line::Blank);
        assert_eq!(parse("help"), Line::Help);
        assert_eq!(parse("exit"), Line::Quit);
        assert_eq!(parse("quit"), Line::Quit);
        assert_eq!(parse("use users"), Line::Use(Some("users".into())));
        assert_eq!(parse("use"), Line::Use(None));
        assert_eq!(parse("consistency all"), Line::Consistency(Some(Consistency::All)));
        assert_eq!(parse("consistency 2"), Line::Consistency(Some(Consistency::N(2))));
        assert_eq!(
            Line::parse("watch", "users").unwrap(),
            Line::Watch { collection: "users".into(), prefix: None }
        );
        assert_eq!(
            parse("watch events 2024-"),
            Line::Watch { collection: "events".into(), prefix: Some("2024-".into()) }
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let err = |line: &str| Line::parse(line, "default").unwrap_err().0;
        assert!(err("frobnicate").contains("unknown command"), "{}", err("frobnicate"));
        assert!(err("use no/slash").contains("invalid collection"), "{}", err("use no/slash"));
        assert!(err("consistency most").contains("most"), "{}", err("consistency most"));
        assert_eq!(err("get a b c"), "usage: get [COLLECTION] KEY");
        assert!(err("set k \"open").contains("unterminated"));
    }

    #[test]
    fn help_lists_every_command_with_an_example() {
        let text = help_text("users", Consistency::Quorum);
        for (name, ..) in COMMANDS {
            assert!(text.lines().any(|l| l.trim_start().starts_with(name)), "{name}: {text}");
        }
        assert!(text.contains("e.g. set users alice \"Alice Smith\""), "{text}");
        assert!(text.contains("\"users\"") && text.contains("quorum"), "{text}");
    }
}
