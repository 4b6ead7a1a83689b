//! Restart requests: a failed node restarted light by a live peer.
//!
//! Anyone may file a restart request for a node ([`crate::Node::request_restart`],
//! or `understudy request-restart`); a node may file one for itself in
//! advance. The coordinator keeps it in its durable record and sends it, as
//! soon as the node has failed, to one live member that launches restarts
//! (one with a [`crate::NodeOptions::restart_command`]; the lowest id among
//! them), or to the first such member admitted later; with none live the
//! request is refused. That member launches the restart with its command.
//! Should two launch after all (a coordinator restart between the two
//! sends), the second restart is refused harmlessly — the node is live
//! again, or its log is locked — and exits with an error.
//!
//! The launched command is the operator's to choose; `understudy node`
//! launches `understudy restart-light`, which backs the node's own
//! in-flight work out, releases its retained locks and exits.

use std::process::{Command, Stdio};

use crate::node::state::NodeState;

/// Replaces `{cluster}` and `{node}` in each word of `template`.
pub fn command_line(template: &[String], cluster: &std::path::Path, node: u32) -> Vec<String> {
    template
        .iter()
        .map(|w| {
            w.replace("{cluster}", &cluster.display().to_string())
                .replace("{node}", &node.to_string())
        })
        .collect()
}

/// Handles a `RestartRequested` event for `failed`: launches its restart
/// if this node is the one to.
pub(crate) fn on_request(inner: &NodeState, failed: u32) {
    let Some(template) = inner.opts.restart_command.as_ref().filter(|t| !t.is_empty()) else {
        return;
    };
    if failed == inner.node_id || inner.check_running().is_err() {
        return;
    }
    let members = match inner.client.status() {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(failed, error = %e, "restart request: no status from the coordinator");
            return;
        }
    };
    if members.iter().any(|m| m.node == failed && m.live) {
        return; // it came back meanwhile
    }
    let words = command_line(template, &inner.cluster.dir, failed);
    tracing::info!(failed, command = ?words, "launching a restart");
    let spawned = Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn();
    match spawned {
        // Reaped on its own thread, which reports how it ended.
        Ok(mut child) => {
            let _ = std::thread::Builder::new()
                .name(format!("restart-{failed}"))
                .spawn(move || match child.wait() {
                    Ok(status) if status.success() => tracing::info!(failed, "restart finished"),
                    Ok(status) => tracing::warn!(failed, %status, "restart failed"),
                    Err(e) => tracing::warn!(failed, error = %e, "restart could not be waited for"),
                });
        }
        Err(e) => tracing::warn!(failed, error = %e, command = ?words, "restart could not be launched"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in_every_word() {
        let t: Vec<String> = ["understudy", "restart-light", "--cluster", "{cluster}", "--node={node}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            command_line(&t, std::path::Path::new("/c"), 7),
            ["understudy", "restart-light", "--cluster", "/c", "--node=7"]
        );
    }
}
