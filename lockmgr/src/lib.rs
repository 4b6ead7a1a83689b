//! The distributed lock manager.
//!
//! This crate will own the lock table (modes IS, IX, S, SIX, X; conversions;
//! FIFO grants; wait policies; deadlock detection), retained locks of failed
//! nodes, the coordinator server and its client, membership and leases, and
//! the counterpart registry (`../shared/DESIGN.md`, "The lock manager and the
//! coordinator"). It must never touch a node's private log.
