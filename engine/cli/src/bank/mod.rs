//! The bank workload: accounts whose balances only move between each other,
//! so their sum is an invariant that survives any crash, and a journal of
//! transfers whose acknowledged entries must survive too.
//!
//! ## Schema
//! Table `bank`: key `acct-NNNNNN` (six digits, from 0), value the balance as
//! decimal ASCII. Table `transfers`: key a transfer id
//! `<node>-<incarnation>-<thread>-<seq>`, unique across the cluster's whole
//! life (an incarnation number never repeats for a node), value
//! `<from>,<to>,<amount>` with account keys.
//!
//! ## One transfer
//! Begin; read both balances; pick an amount from 1 to min(50, the payer's
//! balance) (nothing to move from an empty account: roll back and skip);
//! write both balances and the journal entry; commit; only then print
//! `ACK <id> <from> <to> <amount>`. Every ACK line is therefore a promise:
//! that transfer is committed and must be found after any crash.
//!
//! Conflicting transfers deadlock (both read a page, both want to write it);
//! the coordinator picks a victim, and the victim retries after a short
//! random backoff, as it does for every error
//! [`understudy::Error::is_retryable`] names.
//!
//! The pieces: [`schema`] (tables, keys, creating the bank, its total),
//! [`ack`] (the acknowledgement line a committed transfer prints),
//! [`check`] (every acknowledged transfer in the journal), [`transfer`]
//! (the transfer threads), [`audit`] (read-only transactions summing every
//! balance while transfers run). Tests that kill bank nodes reuse them.

pub mod ack;
pub mod audit;
pub mod check;
pub mod schema;
pub mod transfer;

pub use ack::Ack;
pub use audit::run_audits;
pub use check::{check_acks, read_acks};
pub use schema::{account_key, expected_total, init, total_balance, ACCOUNTS_TABLE, TRANSFERS_TABLE};
pub use transfer::{run_transfers, Totals, TransferConfig};
