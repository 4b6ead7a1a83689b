//! The transfer threads: each runs transfers between random accounts until
//! a deadline, keeping several in flight at once if asked, and prints an
//! [`Ack`] line for each as soon as its commit returns.
//!
//! ## One transfer
//! Begin; read both balances; pick an amount from 1 to min(50, the payer's
//! balance) (nothing to move from an empty account: roll back and skip);
//! write the payer's balance (and, with `receipts`, the transfer's receipt
//! through the file outbox: written aside now, published at commit); pause
//! (`think`) with the locks held; write the payee's balance and the journal
//! entry; commit; only then print the ACK.
//!
//! Conflicting transfers deadlock (both read a page, both want to write it);
//! the coordinator picks a victim, and the victim retries after a short
//! random backoff ([`understudy::RetryPolicy`]), as it does for every error
//! [`understudy::Error::is_retryable`] names; a transfer retried 100 times
//! is given up.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use understudy::{Node, RetryPolicy};

use crate::bank::ack::Ack;
use crate::bank::schema::{account_key, balance, journal_entry, ACCOUNTS_TABLE, TRANSFERS_TABLE};
use crate::error::CliError;
use crate::threads::join_all;

/// Largest amount one transfer moves.
const MAX_AMOUNT: u64 = 50;

/// How the transfer threads run.
#[derive(Clone, Debug)]
pub struct TransferConfig {
    pub threads: u16,
    pub accounts: u32,
    /// When to stop; `None` runs until an error (or SIGKILL).
    pub deadline: Option<Instant>,
    /// Stop once this is set (a signal asked the node to stop).
    pub stop: Option<std::sync::Arc<AtomicBool>>,
    /// A pause between a transfer's first and second write, while its first
    /// change is logged and its locks held.
    pub think: Option<Duration>,
    /// Transfers each thread keeps in flight at once, interleaved: while
    /// one pauses, the thread starts or finishes the others.
    pub per_thread: u16,
    /// Each transfer writes a receipt through this outbox, right after its
    /// first write: a file named after the transfer, holding its journal
    /// entry, published exactly when the transfer commits.
    pub receipts: Option<understudy::FileOutbox>,
}

/// What the transfer threads did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Committed and acknowledged.
    pub transfers: u64,
    /// Attempts rolled back on a retryable error and tried again.
    pub retries: u64,
    /// Transfers dropped after [`RetryPolicy::max_retries`] retries.
    pub given_up: u64,
    /// Transfers from an empty account, rolled back.
    pub skipped: u64,
}

impl Totals {
    fn add(&mut self, o: Totals) {
        self.transfers += o.transfers;
        self.retries += o.retries;
        self.given_up += o.given_up;
        self.skipped += o.skipped;
    }
}

/// What the threads share: when to stop, and stdout.
struct Shared<'a> {
    cfg: &'a TransferConfig,
    stop: AtomicBool,
    /// One lock around stdout so that each line is written whole.
    out: Mutex<std::io::Stdout>,
}

impl Shared<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.cfg.deadline.is_some_and(|d| Instant::now() >= d)
            || self.cfg.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
    }

    fn out(&self) -> MutexGuard<'_, std::io::Stdout> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs transfers on `cfg.threads` threads until the deadline or the first
/// error that retrying cannot cure (which is returned, after every thread
/// has stopped).
pub fn run_transfers(node: &Node, cfg: &TransferConfig) -> Result<Totals, CliError> {
    if cfg.accounts < 2 {
        return Err(CliError::Invalid("transfers need at least 2 accounts".into()));
    }
    let shared = Shared {
        cfg,
        stop: AtomicBool::new(false),
        out: Mutex::new(std::io::stdout()),
    };
    let results: Vec<Result<Totals, CliError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cfg.threads)
            .map(|thread| {
                let shared = &shared;
                s.spawn(move || {
                    transfer_thread(node, u32::from(thread), shared)
                        .inspect_err(|_| shared.stop.store(true, Ordering::Relaxed))
                })
            })
            .collect();
        join_all(workers, || CliError::Invalid("a transfer thread panicked".into()))
    });
    let mut totals = Totals::default();
    for r in results {
        totals.add(r?);
    }
    Ok(totals)
}

/// One of a thread's transfers: which it is, how often it was retried, and
/// where it stands.
struct Slot {
    id: String,
    from: String,
    to: String,
    tries: u32,
    /// The node's rejoins when the transfer last started: it belongs to
    /// the incarnation after them.
    rejoins: u64,
    state: SlotState,
}

enum SlotState {
    /// To be started (again) at this time.
    Due(Instant),
    /// Started: its first write is made and its locks held; it finishes
    /// once its pause is over.
    Pausing(Box<Pending>, Instant),
}

impl Slot {
    fn new(prefix: &str, seq: &mut u64, accounts: u32, rng: &mut impl Rng) -> Slot {
        let from = rng.random_range(0..accounts);
        let to = (from + rng.random_range(1..accounts)) % accounts;
        *seq += 1;
        Slot {
            id: format!("{prefix}-{}", *seq - 1),
            from: account_key(from),
            to: account_key(to),
            tries: 0,
            rejoins: 0,
            state: SlotState::Due(Instant::now()),
        }
    }
}

/// Runs `per_thread` transfers at a time, each begun, paused and finished
/// in turn, until told to stop. With one per thread this is a plain loop of
/// transfers.
fn transfer_thread(node: &Node, thread: u32, shared: &Shared<'_>) -> Result<Totals, CliError> {
    let mut rng = rand::rng();
    let mut totals = Totals::default();
    let cfg = shared.cfg;
    let prefix = format!("{}-{}-{thread}", node.id(), node.incarnation());
    let mut seq = 0u64;
    let policy = RetryPolicy::default();
    let mut slots: Vec<Slot> = (0..cfg.per_thread.max(1))
        .map(|_| Slot::new(&prefix, &mut seq, cfg.accounts, &mut rng))
        .collect();
    while !shared.stopping() {
        let now = Instant::now();
        for slot in &mut slots {
            let outcome = match std::mem::replace(&mut slot.state, SlotState::Due(now)) {
                SlotState::Due(at) if at > now => {
                    slot.state = SlotState::Due(at);
                    continue;
                }
                SlotState::Due(_) => {
                    slot.rejoins = node.rejoins();
                    match start_transfer(node, slot, cfg.receipts.as_ref(), &mut rng) {
                        Ok(Some(p)) => {
                            slot.state = SlotState::Pausing(Box::new(p), now + cfg.think.unwrap_or_default());
                            continue;
                        }
                        Ok(None) => {
                            totals.skipped += 1;
                            *slot = Slot::new(&prefix, &mut seq, cfg.accounts, &mut rng);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                SlotState::Pausing(p, until) if until > now => {
                    slot.state = SlotState::Pausing(p, until);
                    continue;
                }
                SlotState::Pausing(p, _) => finish_transfer(*p),
            };
            match outcome {
                Ok(ack) => {
                    let mut out = shared.out();
                    writeln!(out, "{ack}")
                        .and_then(|()| out.flush())
                        .map_err(|e| CliError::os("writing an acknowledgement to stdout", e))?;
                    drop(out);
                    totals.transfers += 1;
                    *slot = Slot::new(&prefix, &mut seq, cfg.accounts, &mut rng);
                }
                Err(CliError::Engine(e)) if e.is_retryable() => {
                    if slot.tries == policy.max_retries {
                        tracing::warn!(transfer = slot.id, error = %e, "transfer given up");
                        totals.given_up += 1;
                        *slot = Slot::new(&prefix, &mut seq, cfg.accounts, &mut rng);
                    } else {
                        slot.tries += 1;
                        totals.retries += 1;
                        slot.state = SlotState::Due(Instant::now() + policy.backoff(slot.tries));
                    }
                }
                // The node's incarnation ended with its lease: the transfer
                // is lost with it (never acknowledged; backed out unless its
                // commit reached the disk), and the thread goes on once the
                // node has joined again.
                Err(CliError::Engine(e)) if ended_with_the_incarnation(node, slot.rejoins, &e) => {
                    if !wait_rejoined(node, shared) {
                        return Err(CliError::Engine(e));
                    }
                    *slot = Slot::new(&prefix, &mut seq, cfg.accounts, &mut rng);
                }
                Err(e) => return Err(e),
            }
        }
        // Sleep until the next slot has something to do.
        let next = slots
            .iter()
            .map(|s| match &s.state {
                SlotState::Due(at) | SlotState::Pausing(_, at) => *at,
            })
            .min()
            .unwrap_or(now);
        let wait = next.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait.min(Duration::from_millis(50)));
        }
    }
    Ok(totals)
}

/// How long a transfer thread waits for its node to join again after a
/// lost lease before it gives up.
const REJOIN_WAIT: Duration = Duration::from_secs(60);

/// Whether `e` says the incarnation a transfer started on (after
/// `rejoins` rejoins) ended with its lease, the node joining (or having
/// joined) again: a transaction of the old incarnation fails so. A failure
/// of the incarnation the node still runs is not one.
fn ended_with_the_incarnation(node: &Node, rejoins: u64, e: &understudy::Error) -> bool {
    use understudy::Error;
    matches!(e, Error::LeaseLost | Error::Stopped(_) | Error::CommitFailed(_))
        && (node.rejoining() || node.rejoins() > rejoins)
}

/// Waits until the node serves again (`true`), or gives up after
/// [`REJOIN_WAIT`], when it stops for another reason, or when the threads
/// are told to stop.
fn wait_rejoined(node: &Node, shared: &Shared<'_>) -> bool {
    let deadline = Instant::now() + REJOIN_WAIT;
    while Instant::now() < deadline && !shared.stopping() {
        if node.stopped().is_none() {
            return true;
        }
        if !node.rejoining() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A transfer between its first write and the rest: in flight, its locks
/// held.
struct Pending {
    txn: understudy::Transaction,
    ack: Ack,
    credited: u64,
}

/// Starts a transfer: reads both balances, debits the payer and writes the
/// receipt when asked. `None` when the payer's account is empty (rolled
/// back). Any failure rolls the transaction back.
fn start_transfer(
    node: &Node,
    slot: &Slot,
    receipts: Option<&understudy::FileOutbox>,
    rng: &mut impl Rng,
) -> Result<Option<Pending>, CliError> {
    let (id, from, to) = (slot.id.as_str(), slot.from.as_str(), slot.to.as_str());
    let mut txn = node.begin()?;
    let staged = (|| -> Result<Option<(u64, u64)>, CliError> {
        let from_balance = balance(&mut txn, from)?;
        let to_balance = balance(&mut txn, to)?;
        if from_balance == 0 {
            return Ok(None);
        }
        let amount = rng.random_range(1..=from_balance.min(MAX_AMOUNT));
        let credited = to_balance
            .checked_add(amount)
            .ok_or_else(|| CliError::Check(format!("account {to} would overflow")))?;
        txn.put(
            ACCOUNTS_TABLE,
            from.as_bytes(),
            (from_balance - amount).to_string().as_bytes(),
        )?;
        if let Some(outbox) = receipts {
            outbox.put(&mut txn, id, journal_entry(from, to, amount).as_bytes())?;
        }
        Ok(Some((amount, credited)))
    })();
    match staged {
        Ok(Some((amount, credited))) => Ok(Some(Pending {
            txn,
            ack: Ack {
                id: id.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                amount,
            },
            credited,
        })),
        Ok(None) => {
            txn.rollback()?;
            Ok(None)
        }
        Err(e) => {
            // The first error says what went wrong; a rollback failing after
            // it (the node stopped) adds nothing.
            let _ = txn.rollback();
            Err(e)
        }
    }
}

/// Credits the payee, journals the transfer and commits.
fn finish_transfer(p: Pending) -> Result<Ack, CliError> {
    let Pending { mut txn, ack, credited } = p;
    let staged = (|| -> Result<(), CliError> {
        txn.put(ACCOUNTS_TABLE, ack.to.as_bytes(), credited.to_string().as_bytes())?;
        let entry = journal_entry(&ack.from, &ack.to, ack.amount);
        txn.put(TRANSFERS_TABLE, ack.id.as_bytes(), entry.as_bytes())?;
        Ok(())
    })();
    match staged {
        Ok(()) => {
            txn.commit()?;
            Ok(ack)
        }
        Err(e) => {
            let _ = txn.rollback();
            Err(e)
        }
    }
}
