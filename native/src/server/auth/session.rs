//! Who a client connection speaks for: the token it presented and the grant it was
//! given, looked up again as the connection goes on, and the check of each operation
//! against it. WebSocket clients and Redis clients (`AUTH`) hold one each.

use super::{Presented, Refusal};
use crate::server::AppState;
use dhrt_core::{
    auth::{check_reserved, Grant},
    proto::client::Op,
};
use std::sync::Arc;

/// Who a client connection speaks for.
#[derive(Default)]
pub struct Session {
    /// The token it presented (hashed).
    pub presented: Option<Presented>,
    /// Its grant, as last looked up.
    pub grant: Option<Arc<Grant>>,
}

impl Session {
    /// Looks the connection's grant up again (the cache answers unless it is stale), so
    /// a revoked token stops working on an open connection within seconds.
    pub async fn refresh(&mut self, state: &AppState) -> Result<(), Refusal> {
        let Some(presented) = &self.presented else {
            self.grant = None;
            return Err(Refusal::unauthorized(super::NO_TOKEN));
        };
        match state.tokens.grant(state, presented).await {
            Ok(grant) => {
                self.grant = Some(grant);
                Ok(())
            }
            Err(refusal) => {
                self.grant = None;
                Err(refusal)
            }
        }
    }

    /// Whether this connection may run `op`: reserved collections are refused to
    /// everyone; with tokens required, the grant must allow it.
    pub fn check(
        &self,
        state: &AppState,
        op: &Op,
        refused: &Option<Refusal>,
    ) -> Result<(), Refusal> {
        check_reserved(op).map_err(Refusal::forbidden)?;
        if !state.tokens.required() {
            return Ok(());
        }
        match (&self.grant, refused) {
            (Some(grant), _) => grant.permits(op).map_err(Refusal::forbidden),
            (None, Some(refusal)) => Err(refusal.clone()),
            (None, None) => Err(Refusal::unauthorized(super::NO_TOKEN)),
        }
    }
}
