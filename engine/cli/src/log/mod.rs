//! The write-ahead log alone, without the engine: `log-demo` (group commit,
//! then processes killed with SIGKILL mid-append and every acknowledged
//! commit found again), the hidden `log-child` it kills, `inspect-log`, and
//! the survey both use to check a log record by record.

pub mod ack;
pub mod child;
pub mod config;
pub mod demo;
pub mod inspect;
pub mod survey;
pub mod workload;
