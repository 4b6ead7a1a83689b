//! The engine itself as processes: creating a cluster directory
//! (`cluster-init`), its coordinator (`coordinator`), nodes (`node`), what
//! the coordinator knows (`status`), operator recovery (`recover`,
//! `restart-light`, `request-restart`), the bank check (`bank-check`), the
//! file outbox those commands register (`--outbox`), and the cluster demo with its recovery bench (`demo`, `demo --bench`) on the
//! processes harness they share.

pub mod bank_check;
pub mod coordinator;
pub mod demo;
pub mod demo_args;
pub mod init;
pub mod node;
pub mod outbox;
pub mod processes;
pub mod recover;
pub mod recovery_bench;
pub mod stats;
pub mod status;
