//! `dhrt serve --config FILE` with real node processes: the file sets the port and the
//! storage, a flag overrides the file, `DHRT_CONFIG` names the file (also for `dhrt
//! join`), and a file with an unknown key, a wrong type or no file at all stops the node
//! before it starts, with a message naming the key and the file.

mod common;

use common::{bin, run_bounded, NodeProc};
use std::{net::TcpListener, path::Path, process::Command, time::Duration};

/// `dhrt ARGS` run in `dir`, so relative data dirs land there.
fn dhrt_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir).args(args).env_remove("DHRT_CONFIG");
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the config file");
    path.to_str().expect("a UTF-8 temp path").to_string()
}

#[test]
fn the_file_sets_the_port_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = write(dir.path(), "dhrt.toml", &format!("port = {port}\nmemory = true\n"));
    let node = NodeProc::launch(dhrt_in(dir.path(), &["serve", "--config", &config]));
    assert_eq!(node.port(), port, "{}", node.log());
    assert!(!dir.path().join("dhrt-data").exists(), "memory = true: nothing on disk");
    assert!(node.log().contains("settings read from the config file"), "{}", node.log());
}

#[test]
fn a_flag_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // The file's port is taken: the node only starts if --port wins.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = format!("port = {port}\ndata-dir = \"from-file\"\nreplicas = 1\n");
    let config = write(dir.path(), "dhrt.toml", &text);
    let args = ["serve", "--config", &config, "--port", "0", "--data-dir", "from-flag"];
    let node = NodeProc::launch(dhrt_in(dir.path(), &args));
    assert_ne!(node.port(), port);
    assert!(dir.path().join("from-flag").join("node.redb").exists(), "{}", node.log());
    assert!(!dir.path().join("from-file").exists());
}

#[test]
fn dhrt_config_names_the_file_for_join_too() {
    let seed = NodeProc::start(None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "node.toml", "port = 0\nmemory = true\n");
    let mut cmd = dhrt_in(dir.path(), &["join", &seed.addr]);
    cmd.env("DHRT_CONFIG", &config);
    let node = NodeProc::launch(cmd);
    assert_ne!(node.port(), seed.port());
    assert!(!dir.path().join("dhrt-data").exists(), "memory = true from DHRT_CONFIG");
}

/// Runs `dhrt serve --config FILE` with `text` in FILE; it must exit, failing.
fn refused(text: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "bad.toml", text);
    let cmd = dhrt_in(dir.path(), &["serve", "--config", &config]);
    let ran = run_bounded(cmd, b"", Duration::from_secs(60));
    assert_eq!(ran.code, Some(1), "the node must not start: {}", ran.stderr);
    assert!(ran.stdout.is_empty(), "{}", String::from_utf8_lossy(&ran.stdout));
    assert!(!dir.path().join("dhrt-data").exists());
    (config, ran.stderr)
}

#[test]
fn an_unknown_key_stops_the_node_naming_the_key_and_the_file() {
    let (config, stderr) = refused("port = 0\nmemroy = true\n");
    assert!(stderr.contains(&format!("config file {config}: unknown field `memroy`")), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("`memory`"), "the known keys are listed: {stderr}");
}

#[test]
fn a_wrong_type_stops_the_node_naming_the_key() {
    let (config, stderr) = refused("port = 0\nreplicas = \"three\"\n");
    assert!(stderr.contains(&format!("config file {config}: key `replicas`")), "{stderr}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let missing = missing.to_str().unwrap();
    let ran = run_bounded(
        dhrt_in(dir.path(), &["serve", "--config", missing]),
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("config file {missing}: cannot read it")),
        "{}",
        ran.stderr
    );
}
