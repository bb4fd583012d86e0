//! `dhrt remove ID`: removing a member that is dead for good (admin).
//!
//! One call asks `--node` to start the removal (see `dhrt_core::node::remove`); then,
//! unless `--no-wait`, the command follows `--node`'s view of the ring once a second
//! until the member is `left`, and exits 0 — or exits 1 when `--wait` seconds pass
//! first (the removal goes on; running the command again resumes following it).

use super::data::Target;
use clap::Args;
use dhrt_core::NodeId;
use std::time::{Duration, Instant};

/// `dhrt remove ...`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The member's id (16 hex digits, as `dhrt ring` prints it).
    id: NodeId,
    /// Finish even if other owners of its ranges are down too: writes that only the
    /// removed member and those owners held are lost.
    #[arg(long)]
    force: bool,
    /// Return once the removal started instead of following it.
    #[arg(long)]
    no_wait: bool,
    /// Seconds to follow the removal before giving up (it goes on).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    wait: u64,
}

/// Runs `dhrt remove ...` against `--node`.
pub fn run(args: &RemoveArgs, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = target.connect().await?;
        client.remove_member(&target.node, args.id, args.force).await?;
        eprintln!(
            "removing {}: the other owners of its ranges hand them to their next owners \
             (progress in the log of {})",
            args.id, target.node
        );
        if args.no_wait {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(args.wait);
        loop {
            let ring = client.ring().await?;
            match ring.iter().find(|m| m.id == args.id) {
                Some(m) if m.status == "left" => {
                    eprintln!("removed {}: its ranges belong to the other members", args.id);
                    return Ok(());
                }
                Some(m) if m.status != "dead" => {
                    return Err(format!(
                        "{} is {} again: it came back, so its removal stopped",
                        args.id, m.status
                    )
                    .into());
                }
                Some(_) => {}
                None => return Err(format!("{} is not a member any more", args.id).into()),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} is still being removed after {} s (it goes on; run the command again \
                     to follow it, or see `dhrt ring`)",
                    args.id, args.wait
                )
                .into());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
