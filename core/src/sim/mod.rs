//! The deterministic simulator (feature `sim`): many nodes, one seed, every failure.
//!
//! A [`Sim`] hosts sans-IO state machines ([`Process`]) on a simulated network and a
//! simulated clock. It delivers their messages with a latency drawn from the network
//! model ([`NetConfig`]: uniform or long-tailed delays, which reorder messages; loss;
//! duplication), fires their timers at their deadlines, and lets a scenario break things:
//! partitions and heals, crashes and restarts with or without state, skewed clocks, slow
//! peers, churn. Nothing is real — no threads, sockets or wall clock — so a run is a pure
//! function of its seed: a failure prints the seed, and `DHRT_SIM_SEED=<seed>` replays it
//! exactly ([`check_seeds`]).
//!
//! The processes are the same state machines the servers drive, and the Chord research
//! code ([`chord`]): [`ChordProcess`] wraps [`chord::ChordNode`]; [`RingProcess`] runs
//! [`crate::membership::Membership`]
//! with a Chord node that routes from the gossiped token table. Events are kept for
//! checkers and experiments; the Chord paper's experiments live in [`experiments`], the
//! membership ones in [`cluster`], the node's safety checkers in [`safety`], and the durability checker (nothing is
//! acknowledged before it is durable, under commit latency, failures and crashes) in
//! [`durability`], and the strict-quorum register checker (every read returns the last
//! acknowledged write or a newer one, while nodes join, leave, crash and are partitioned,
//! under skewed clocks) in [`register`].
//!
//! Time in the simulator is global; each host sees it through its own skew. The event
//! queue orders by (time, sequence), so simultaneous events run in the order they were
//! scheduled, deterministically.

pub mod chord;
pub mod cluster;
pub mod durability;
pub mod experiments;
pub mod net;
pub mod node;
pub mod register;
pub mod safety;
pub mod seeds;
pub mod world;

pub use chord::{ChordEnvelope, ChordProcess};
pub use cluster::{sim_addr, RingEvent, RingMsg, RingProcess};
pub use net::{Latency, NetConfig};
pub use node::{
    call, cluster_of, memory_cluster, ssd_cluster, CommitModel, NodeOutput, NodeProcess,
};
pub use seeds::check_seeds;
pub use world::{Effect, Process, Sim, SimStats};
