//! Loosely-coupled mode for nodes that share no disk.
//!
//! This crate will own shipping checkpoints of a node's data and its committed
//! log entries to chosen peers, failover to the peer holding the most current
//! checkpoint and log, failback when the node returns, and consistency groups
//! that checkpoint several tables at one group-consistent point
//! (`../shared/DESIGN.md`, "Loosely-coupled mode"). Nothing is built here yet;
//! it depends on `engine` once it exists and nothing depends on it.
