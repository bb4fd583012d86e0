//! A test speaking the peer protocol by hand: a raw link to a node's `/v1/peer`, and the
//! peer handshake completed as a member that holds the cluster secret.

use dhrt::server::{
    peer_auth::{self, Credentials},
    security::Secret,
};
use dhrt_core::{wire, NodeId};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Ws;

/// A WebSocket from a test to a node.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next binary frame (pings skipped), or `None` when the link closes or 10 s pass.
pub async fn next_binary(ws: &mut Socket) -> Option<Vec<u8>> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Ws::Binary(b))) => return Some(b.to_vec()),
                Some(Ok(Ws::Ping(_) | Ws::Pong(_))) => {}
                _ => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.ok().flatten()
}

/// Opens a peer link to the node at `addr` as node `id` and completes the handshake with
/// `secret`; panics when the node does not welcome it.
pub async fn join_as_member(addr: &str, id: u64, secret: &Secret) -> Socket {
    let me = Credentials::new(NodeId(id), Some(secret));
    let url = format!("ws://{addr}/v1/peer?version={}", wire::VERSION);
    let mut ws = tokio_tungstenite::connect_async(url).await.expect("upgrade").0;
    let challenge = peer_auth::decode(&next_binary(&mut ws).await.expect("a challenge")).unwrap();
    let (hello, expect) = me.hello(challenge).unwrap();
    ws.send(Ws::Binary(peer_auth::encode(&hello).into())).await.unwrap();
    let welcome = peer_auth::decode(&next_binary(&mut ws).await.expect("a welcome")).unwrap();
    me.check_welcome(&expect, welcome).expect("a member is welcome");
    ws
}
