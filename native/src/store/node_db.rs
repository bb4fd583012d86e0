//! `NodeDb`: what a node remembers about itself across restarts, in `node.redb`.
//!
//! Three values, each in one row of one table, each written by its own durable
//! transaction:
//!
//! - the node's **id**, chosen once on first start, so a restarted node is the same
//!   member of the ring (same tokens, same hints addressed to it);
//! - its [`NodeState`] (last full sync, moved tokens), which the node emits as
//!   `Output::Persist` and takes back in `Node::with_state`;
//! - the **addresses of known peers**, so a restarted node can rejoin through any of
//!   them without `--join`;
//! - the **hints** it holds for replicas that missed writes (`Node::restore_hints`).
//!
//! The file is created atomically (under `.node.redb.tmp`, then renamed), so an empty
//! or unreadable `node.redb` is damage and an error at start — never a new identity.
//!
//! Every value starts with a format version byte. The state is MessagePack with field
//! names (`rmp_serde::to_vec_named`) so fields can be added later; a value that does not
//! decode is [`StoreError::Corrupt`], never a panic.

use super::engine_error;
use ::redb::{Database, ReadableDatabase, TableDefinition, TableError};
use dhrt_core::{
    entry::NodeId,
    node::{hints::Hint, NodeState},
    store::StoreError,
};
use std::fs;
use std::path::Path;

/// The file name of the node database in the data dir.
pub const NODE_DB_FILE: &str = "node.redb";

/// Every row: name → version byte + payload.
const NODE: TableDefinition<&str, &[u8]> = TableDefinition::new("node");
const ID: &str = "id";
const STATE: &str = "state";
const PEERS: &str = "peers";
const HINTS: &str = "hints";
/// The format version of every row.
const FORMAT: u8 = 1;

/// The node's identity, saved state and known peers (`<data-dir>/node.redb`).
pub struct NodeDb {
    /// The open file; re-opened after an I/O failure (redb refuses every later use of
    /// a database that met one, a full disk included, until it is re-opened).
    db: std::cell::RefCell<Database>,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for NodeDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDb").finish_non_exhaustive()
    }
}

impl NodeDb {
    /// Opens `<dir>/node.redb`, creating `dir` and the file (atomically) when missing.
    /// An empty or unreadable file is an error that names it.
    pub fn open(dir: &Path) -> Result<NodeDb, StoreError> {
        fs::create_dir_all(dir)
            .map_err(|e| super::io_error(&format!("creating {}", dir.display()), &e))?;
        let path = dir.join(NODE_DB_FILE);
        let temp = dir.join(format!(".{NODE_DB_FILE}.tmp"));
        if temp.exists() {
            tracing::warn!(file = %temp.display(), "removing a node.redb whose creation was interrupted");
            let _ = fs::remove_file(&temp);
        }
        if !path.exists() {
            super::redb::create_atomically(&temp, &path, dir, |_| Ok(()))?;
        }
        let options = super::RedbOptions { cache_bytes: 1 << 20, ..Default::default() };
        let db = super::redb::open_db(&path, &options).map_err(|e| match e {
            StoreError::Corrupt(why) => StoreError::Corrupt(format!(
                "{why} (node.redb holds this node's identity: a new one is never made in its \
                 place; after `dhrt repair` the node starts as a new member)"
            )),
            e => e,
        })?;
        Ok(NodeDb { db: std::cell::RefCell::new(db), path })
    }

    /// After a failed read or write: re-opens the file when the failure was I/O, so
    /// that the next attempt can succeed once the disk recovers (a full disk).
    fn reopen_after(&self, e: &StoreError) {
        if !matches!(e, StoreError::Io(_) | StoreError::Full(_)) {
            return;
        }
        let options = super::RedbOptions { cache_bytes: 1 << 20, ..Default::default() };
        // The old handle must be closed (it holds the file's lock) before the new open.
        let placeholder = match Database::builder()
            .create_with_backend(::redb::backends::InMemoryBackend::new())
        {
            Ok(db) => db,
            Err(_) => return,
        };
        let old = self.db.replace(placeholder);
        drop(old);
        match super::redb::open_db(&self.path, &options) {
            Ok(db) => {
                self.db.replace(db);
            }
            Err(again) => {
                tracing::warn!(error = %again, "cannot re-open node.redb yet; will retry");
            }
        }
    }

    /// The node's id, once one was saved.
    pub fn node_id(&self) -> Result<Option<NodeId>, StoreError> {
        let Some(raw) = self.read(ID)? else { return Ok(None) };
        let bytes: [u8; 8] = raw.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt(format!("node id of {} bytes instead of 8", raw.len()))
        })?;
        Ok(Some(NodeId(u64::from_be_bytes(bytes))))
    }

    /// Saves the node's id durably.
    pub fn set_node_id(&self, id: NodeId) -> Result<(), StoreError> {
        self.write(ID, &id.0.to_be_bytes())
    }

    /// The saved node state; the default state when none was saved yet.
    pub fn state(&self) -> Result<NodeState, StoreError> {
        let Some(raw) = self.read(STATE)? else { return Ok(NodeState::default()) };
        rmp_serde::from_slice(&raw)
            .map_err(|e| StoreError::Corrupt(format!("saved node state: {e}")))
    }

    /// Saves the node state durably.
    pub fn save_state(&self, state: &NodeState) -> Result<(), StoreError> {
        let raw = rmp_serde::to_vec_named(state)
            .map_err(|e| StoreError::Io(format!("encoding the node state: {e}")))?;
        self.write(STATE, &raw)
    }

    /// The saved peer addresses (empty when none were saved).
    pub fn peers(&self) -> Result<Vec<String>, StoreError> {
        let Some(raw) = self.read(PEERS)? else { return Ok(Vec::new()) };
        rmp_serde::from_slice(&raw).map_err(|e| StoreError::Corrupt(format!("saved peers: {e}")))
    }

    /// Replaces the saved peer addresses durably.
    pub fn save_peers(&self, peers: &[String]) -> Result<(), StoreError> {
        let raw = rmp_serde::to_vec(peers)
            .map_err(|e| StoreError::Io(format!("encoding the peer list: {e}")))?;
        self.write(PEERS, &raw)
    }

    /// The saved hints (empty when none were saved).
    pub fn hints(&self) -> Result<Vec<(NodeId, Hint)>, StoreError> {
        let Some(raw) = self.read(HINTS)? else { return Ok(Vec::new()) };
        rmp_serde::from_slice(&raw).map_err(|e| StoreError::Corrupt(format!("saved hints: {e}")))
    }

    /// Replaces the saved hints durably.
    pub fn save_hints(&self, hints: &[(NodeId, Hint)]) -> Result<(), StoreError> {
        let raw = rmp_serde::to_vec(hints)
            .map_err(|e| StoreError::Io(format!("encoding the hints: {e}")))?;
        self.write(HINTS, &raw)
    }

    /// The payload of row `name` after its version byte, if the row exists.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let what = |e: ::redb::Error| engine_error(&format!("reading the node's {name}"), e);
        let raw = (|| {
            let db = self.db.borrow();
            let read = db.begin_read().map_err(|e| what(e.into()))?;
            let table = match read.open_table(NODE) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(what(e.into())),
            };
            let found = table.get(name).map_err(|e| what(e.into()))?;
            Ok(found.map(|v| v.value().to_vec()))
        })();
        let raw = raw.inspect_err(|e| self.reopen_after(e))?;
        let Some(raw) = raw else { return Ok(None) };
        match raw.split_first() {
            Some((&FORMAT, payload)) => Ok(Some(payload.to_vec())),
            Some((v, _)) => Err(StoreError::Corrupt(format!(
                "the node's {name} is in format {v}, not {FORMAT} (written by another dhrt?)"
            ))),
            None => Err(StoreError::Corrupt(format!("the node's {name} is empty"))),
        }
    }

    /// Writes row `name` (version byte + `payload`) in its own durable transaction.
    fn write(&self, name: &str, payload: &[u8]) -> Result<(), StoreError> {
        let what = |e: ::redb::Error| engine_error(&format!("saving the node's {name}"), e);
        let mut row = Vec::with_capacity(1 + payload.len());
        row.push(FORMAT);
        row.extend_from_slice(payload);
        let written = (|| {
            let db = self.db.borrow();
            let mut txn = db.begin_write().map_err(|e| what(e.into()))?;
            txn.set_quick_repair(true);
            {
                let mut table = txn.open_table(NODE).map_err(|e| what(e.into()))?;
                table.insert(name, row.as_slice()).map_err(|e| what(e.into()))?;
            }
            txn.commit().map_err(|e| what(e.into()))
        })();
        written.inspect_err(|e| self.reopen_after(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_node_db_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(&dir.path().join("data")).unwrap();
        assert_eq!(db.node_id().unwrap(), None);
        assert_eq!(db.state().unwrap(), NodeState::default());
        assert!(db.peers().unwrap().is_empty());
        assert!(dir.path().join("data").join(NODE_DB_FILE).is_file());
    }

    #[test]
    fn id_state_and_peers_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state = NodeState {
            last_full_sync_ms: Some(1234),
            tokens: Some(vec![1, 5, 9]),
            incarnation: Some(7),
        };
        let peers = vec!["10.0.0.1:7453".to_string(), "node-b:7453".to_string()];
        {
            let db = NodeDb::open(dir.path()).unwrap();
            db.set_node_id(NodeId(0xfeed)).unwrap();
            db.save_state(&state).unwrap();
            db.save_peers(&peers).unwrap();
            assert_eq!(db.state().unwrap(), state);
        }
        let db = NodeDb::open(dir.path()).unwrap();
        assert_eq!(db.node_id().unwrap(), Some(NodeId(0xfeed)));
        assert_eq!(db.state().unwrap(), state);
        assert_eq!(db.peers().unwrap(), peers);
        db.save_peers(&[]).unwrap();
        assert!(db.peers().unwrap().is_empty(), "saving replaces");
        let plain = NodeState { last_full_sync_ms: None, tokens: None, incarnation: None };
        db.save_state(&plain).unwrap();
        assert_eq!(db.state().unwrap(), plain);
    }

    #[test]
    fn hints_survive_a_reopen() {
        use dhrt_core::{clock::Timestamp, entry::Entry};
        let dir = tempfile::tempdir().unwrap();
        let hint = Hint {
            collection: "users".into(),
            key: bytes::Bytes::from_static(b"alice"),
            entry: Entry::value(
                bytes::Bytes::from_static(b"v"),
                Timestamp::from_parts(1_700_000_000_000, 3),
                NodeId(4),
            ),
        };
        let hints = vec![(NodeId(2), hint.clone()), (NodeId(3), hint)];
        {
            let db = NodeDb::open(dir.path()).unwrap();
            assert!(db.hints().unwrap().is_empty());
            db.save_hints(&hints).unwrap();
        }
        let db = NodeDb::open(dir.path()).unwrap();
        assert_eq!(db.hints().unwrap(), hints);
    }

    #[test]
    fn bad_rows_read_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        for (row, raw) in [(ID, &[FORMAT, 1, 2][..]), (STATE, &[FORMAT, 0xc1]), (PEERS, &[9, 0x90])]
        {
            let txn = db.db.borrow().begin_write().unwrap();
            txn.open_table(NODE).unwrap().insert(row, raw).unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(db.node_id(), Err(StoreError::Corrupt(_))));
        assert!(matches!(db.state(), Err(StoreError::Corrupt(_))));
        let err = db.peers().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)) && err.to_string().contains("format 9"));
    }

    #[test]
    fn an_empty_or_foreign_node_db_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NODE_DB_FILE);
        std::fs::write(&path, b"").unwrap();
        let err = NodeDb::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert!(
            err.to_string().contains("node.redb") && err.to_string().contains("empty"),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
        std::fs::write(&path, vec![0; 1 << 20]).unwrap();
        let err = NodeDb::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("node.redb"), "{err}");
    }

    #[test]
    fn a_leftover_temporary_file_is_removed_and_the_db_created() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".node.redb.tmp"), vec![0; 4096]).unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        assert_eq!(db.node_id().unwrap(), None);
        assert!(!dir.path().join(".node.redb.tmp").exists());
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _db = NodeDb::open(dir.path()).unwrap();
        let err = NodeDb::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("one node per data dir"), "{err}");
    }
}
