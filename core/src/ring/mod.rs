//! Routing: who owns a position, and how a node finds out.
//!
//! Two mechanisms, one answer:
//!
//! - [`table`] — with full membership (gossiped by [`crate::membership`]) every node
//!   holds the token table of the whole cluster and routes in **one hop**: the owner and
//!   the preference list of any position are a binary search away. This is how dhrt
//!   routes in clusters up to thousands of nodes.
//! - Chord's successor lists and fingers (O(log N) hops, maintained by stabilization),
//!   for views that are partial, is research code on the simulator
//!   (`crate::sim::chord`, feature `sim`): it reproduces the Chord paper's measurements
//!   (`docs/simulation.md`), and neither the node nor the light peer uses it.
//!
//! - [`placement`] — on top of the table: a key's owners (fixed by the ring, whoever is
//!   healthy), its pending replicas (joining nodes) and whose answers count, for strict
//!   quorums.
//! - [`collection`] — one collection's placement: its layout's, and while it moves to
//!   another layout, that one's too.
//! - [`spread`] — preference lists restricted to the members a selector accepts and
//!   spread over zones (node labels).
//!
//! Both use Chord's successor rule: a token at `t` whose predecessor is at `p` owns
//! `(p, t]`.

pub mod collection;
pub mod placement;
pub mod spread;
pub mod table;

pub use collection::CollectionPlacement;
pub use placement::{Group, KeyPlacement, Placement};
pub use spread::{Labels, Spread};
pub use table::{tokens_for, RingTable, Vnode, DEFAULT_VNODES};
