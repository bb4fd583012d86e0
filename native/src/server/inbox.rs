//! The byte budget of input in flight to the node thread: the bounded inbox.
//!
//! Every socket reader (client connections, peer links, HTTP requests) takes a share of
//! one budget ([`InboxBudget::charge`]) before it hands what it read to the node thread,
//! and the share travels with the input ([`super::driver::Input::Charged`]); the node
//! thread drops it — giving the bytes back — once it has handled the input. When the
//! node thread falls behind, the budget runs out and readers wait for it (an async
//! wait: no tokio worker blocks), so they stop reading their sockets and TCP's own flow
//! control slows the senders; a peer's link fills and its outbound queue drops frames,
//! as the protocols allow. The semaphore under the budget is fair (first come, first
//! served), so a well-behaved client waits behind at most one batch of each flooding
//! connection, never behind the whole flood.
//!
//! Only input from outside is charged. The node thread's own inputs — the sync
//! thread's reports, timers, operator commands, snapshots — are never charged, so the
//! node thread never waits for itself.

use dhrt_core::proto::client::Op;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget (see the module docs). Cloning shares it.
#[derive(Debug, Clone)]
pub struct InboxBudget {
    permits: Arc<Semaphore>,
    bytes: usize,
}

/// A share of the budget, given back when dropped.
pub type Charge = OwnedSemaphorePermit;

impl InboxBudget {
    /// A budget of `bytes` (at most `u32::MAX`).
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes.clamp(1, u32::MAX as usize);
        InboxBudget { permits: Arc::new(Semaphore::new(bytes)), bytes }
    }

    /// Waits until `bytes` of the budget are free and takes them. Input larger than the
    /// whole budget takes all of it (so it still passes, alone).
    pub async fn charge(&self, bytes: usize) -> Charge {
        let n = bytes.clamp(1, self.bytes) as u32;
        self.permits
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the inbox budget's semaphore is never closed")
    }

    /// Bytes of the budget free now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// The whole budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What a request is charged when it did not come as a frame (an HTTP request): its
/// keys and values, plus a little for the rest.
pub fn op_bytes(op: &Op) -> usize {
    const REST: usize = 64;
    REST + match op {
        Op::Get { key, .. } | Op::Del { key, .. } => key.len(),
        Op::Set { key, value, .. } => key.len() + value.len(),
        Op::GetMany { keys, .. } => keys.iter().map(|k| k.len() + 8).sum(),
        Op::SetMany { items, .. } => items.iter().map(|(k, v)| k.len() + v.len() + 16).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_budget_makes_the_next_reader_wait_until_the_node_gives_back() {
        let budget = InboxBudget::new(100);
        let first = budget.charge(60).await;
        let second = budget.charge(40).await;
        assert_eq!(budget.available(), 0);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.charge(10).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no room: the reader waits");
        drop(first);
        let third = waiting.await.unwrap();
        assert_eq!(budget.available(), 50);
        // Larger than the whole budget: it waits for all of it, then passes alone.
        drop((second, third));
        let huge = budget.charge(1 << 30).await;
        assert_eq!(budget.available(), 0);
        drop(huge);
        assert_eq!(budget.available(), 100);
    }
}
