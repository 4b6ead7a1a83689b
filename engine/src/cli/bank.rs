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
//! random backoff, as it does for every error [`understudy::Error::is_retryable`] names.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use understudy::{Node, Transaction};

use super::CliError;

pub const ACCOUNTS_TABLE: &str = "bank";
pub const TRANSFERS_TABLE: &str = "transfers";
/// Bucket pages of the transfers journal: room for about a hundred thousand
/// entries with 4 KiB pages before chains grow.
pub const TRANSFERS_BUCKETS: u32 = 1024;
/// Accounts per bucket page the accounts table is sized for: few enough
/// pages that transfers still collide (deadlocks, retries, locks a crash
/// leaves retained), enough that nodes mostly run side by side.
const ACCOUNTS_PER_BUCKET: u32 = 2;
/// Accounts written per transaction by [`init`].
const INIT_BATCH: u32 = 100;
/// Largest amount one transfer moves.
const MAX_AMOUNT: u64 = 50;
/// Attempts after the first before a transfer is given up.
const MAX_RETRIES: u32 = 100;
/// Journal entries checked per transaction by [`check_acks`], so that one
/// transaction does not hold an unbounded number of page locks.
const ACK_CHECK_BATCH: usize = 256;

/// The key of account `i`.
pub fn account_key(i: u32) -> String {
    format!("acct-{i:06}")
}

/// A transfer's entry in the journal table: `from,to,amount`. The
/// workload writes it and the check compares against it.
fn journal_entry(from: &str, to: &str, amount: u64) -> String {
    format!("{from},{to},{amount}")
}

/// One acknowledged transfer, as printed by the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub id: String,
    pub from: String,
    pub to: String,
    pub amount: u64,
}

impl Ack {
    /// Parses an `ACK <id> <from> <to> <amount>` line. Other lines (`READY`,
    /// `INIT`, `DONE`) give `None`, so a node's whole stdout can be fed in; a
    /// line that starts with `ACK` but is malformed is an error.
    pub fn parse(line: &str) -> Option<Result<Ack, String>> {
        let mut words = line.split_whitespace();
        if words.next()? != "ACK" {
            return None;
        }
        let fields: Vec<&str> = words.collect();
        let bad = || format!("malformed acknowledgement {line:?}");
        let [id, from, to, amount] = fields[..] else {
            return Some(Err(bad()));
        };
        let Ok(amount) = amount.parse() else {
            return Some(Err(bad()));
        };
        Some(Ok(Ack {
            id: id.into(),
            from: from.into(),
            to: to.into(),
            amount,
        }))
    }

    /// The journal entry this transfer wrote.
    pub fn journal_value(&self) -> String {
        journal_entry(&self.from, &self.to, self.amount)
    }
}

impl std::fmt::Display for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ACK {} {} {} {}", self.id, self.from, self.to, self.amount)
    }
}

/// Runs `attempt` until it succeeds, fails with an error that retrying
/// cannot cure, or has been retried [`MAX_RETRIES`] times (then the last
/// error is returned). Each retry waits a little longer, at random, so that
/// two deadlocked transactions do not meet again at once.
fn retrying<T>(mut attempt: impl FnMut() -> Result<T, CliError>) -> Result<T, CliError> {
    let mut rng = rand::rng();
    let mut tries = 0;
    loop {
        match attempt() {
            Err(CliError::Engine(e)) if e.is_retryable() && tries < MAX_RETRIES => {
                tries += 1;
                std::thread::sleep(backoff(tries, &mut rng));
            }
            other => return other,
        }
    }
}

/// A random pause before retry number `tries`: up to 1 ms per try so far,
/// at most 20 ms.
fn backoff(tries: u32, rng: &mut impl Rng) -> Duration {
    Duration::from_micros(rng.random_range(100..=1000 * u64::from(tries.min(20))))
}

/// The balance `key` holds, read in `txn`.
fn balance(txn: &mut Transaction, key: &str) -> Result<u64, CliError> {
    let value = txn
        .get(ACCOUNTS_TABLE, key.as_bytes())?
        .ok_or_else(|| CliError::Check(format!("account {key} is missing")))?;
    std::str::from_utf8(&value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CliError::Check(format!("account {key} holds {value:?}, not a decimal balance")))
}

/// `accounts × init_balance`, the sum every check expects.
pub fn expected_total(accounts: u32, init_balance: u64) -> Result<u64, CliError> {
    u64::from(accounts)
        .checked_mul(init_balance)
        .ok_or_else(|| CliError::Invalid(format!("{accounts} accounts of {init_balance} overflow a u64 total")))
}

/// Creates both tables and the accounts; returns the total balance.
pub fn init(node: &Node, accounts: u32, init_balance: u64) -> Result<u64, CliError> {
    let total = expected_total(accounts, init_balance)?;
    node.create_table(ACCOUNTS_TABLE, (accounts / ACCOUNTS_PER_BUCKET).max(1))?;
    node.create_table(TRANSFERS_TABLE, TRANSFERS_BUCKETS)?;
    let value = init_balance.to_string();
    for first in (0..accounts).step_by(INIT_BATCH as usize) {
        let last = accounts.min(first + INIT_BATCH);
        retrying(|| {
            let mut txn = node.begin()?;
            for i in first..last {
                txn.put(ACCOUNTS_TABLE, account_key(i).as_bytes(), value.as_bytes())?;
            }
            Ok(txn.commit()?)
        })?;
    }
    Ok(total)
}

/// Reads every balance in one transaction (a consistent picture, even with
/// transfers running elsewhere) and returns the sum.
pub fn total_balance(node: &Node, accounts: u32) -> Result<u64, CliError> {
    retrying(|| {
        let mut txn = node.begin()?;
        let mut sum: u64 = 0;
        for i in 0..accounts {
            let b = balance(&mut txn, &account_key(i))?;
            sum = sum
                .checked_add(b)
                .ok_or_else(|| CliError::Check("the balances overflow a u64".into()))?;
        }
        txn.rollback()?;
        Ok(sum)
    })
}

/// Checks that every acknowledged transfer is in the journal with the value
/// it was acknowledged with; the error names the first few that are not.
pub fn check_acks(node: &Node, acks: &[Ack]) -> Result<(), CliError> {
    let mut wrong = Vec::new();
    for batch in acks.chunks(ACK_CHECK_BATCH) {
        let found = retrying(|| {
            let mut txn = node.begin()?;
            let mut found = Vec::with_capacity(batch.len());
            for ack in batch {
                found.push(txn.get(TRANSFERS_TABLE, ack.id.as_bytes())?);
            }
            txn.rollback()?;
            Ok(found)
        })?;
        for (ack, value) in batch.iter().zip(found) {
            let want = ack.journal_value();
            match value {
                Some(v) if v == want.as_bytes() => {}
                Some(v) => wrong.push(format!(
                    "{} holds {:?}, acknowledged as {want:?}",
                    ack.id,
                    String::from_utf8_lossy(&v)
                )),
                None => wrong.push(format!("{} is missing", ack.id)),
            }
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = wrong.iter().take(5).map(String::as_str).collect();
    Err(CliError::Check(format!(
        "{} of {} acknowledged transfers are not in the journal as acknowledged: {}{}",
        wrong.len(),
        acks.len(),
        shown.join("; "),
        if wrong.len() > shown.len() { "; ..." } else { "" }
    )))
}

/// How the transfer threads run.
#[derive(Clone, Debug)]
pub struct TransferConfig {
    pub threads: u16,
    pub accounts: u32,
    /// When to stop; `None` runs until an error (or SIGKILL).
    pub deadline: Option<Instant>,
    /// A pause between a transfer's first and second write, while its first
    /// change is logged and its locks held.
    pub think: Option<Duration>,
    /// Transfers each thread keeps in flight at once, interleaved: while
    /// one pauses, the thread starts or finishes the others.
    pub per_thread: u16,
}

/// What the transfer threads did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Committed and acknowledged.
    pub transfers: u64,
    /// Attempts rolled back on a retryable error and tried again.
    pub retries: u64,
    /// Transfers dropped after [`MAX_RETRIES`] retries.
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
        self.stop.load(Ordering::Relaxed) || self.cfg.deadline.is_some_and(|d| Instant::now() >= d)
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
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(CliError::Invalid("a transfer thread panicked".into())))
            })
            .collect()
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
                SlotState::Due(_) => match start_transfer(node, &slot.id, &slot.from, &slot.to, &mut rng) {
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
                },
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
                    if slot.tries == MAX_RETRIES {
                        tracing::warn!(transfer = slot.id, error = %e, "transfer given up");
                        totals.given_up += 1;
                        *slot = Slot::new(&prefix, &mut seq, cfg.accounts, &mut rng);
                    } else {
                        slot.tries += 1;
                        totals.retries += 1;
                        slot.state = SlotState::Due(Instant::now() + backoff(slot.tries, &mut rng));
                    }
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

/// A transfer between its first write and the rest: in flight, its locks
/// held.
struct Pending {
    txn: understudy::Transaction,
    ack: Ack,
    credited: u64,
}

/// Starts a transfer: reads both balances and debits the payer. `None`
/// when the payer's account is empty (rolled back). Any failure rolls the
/// transaction back.
fn start_transfer(
    node: &Node,
    id: &str,
    from: &str,
    to: &str,
    rng: &mut impl Rng,
) -> Result<Option<Pending>, CliError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ack_lines_and_skips_others() {
        let ack = Ack::parse("ACK 1-2-0-7 acct-000001 acct-000199 50\n").unwrap().unwrap();
        assert_eq!(ack.id, "1-2-0-7");
        assert_eq!(ack.journal_value(), "acct-000001,acct-000199,50");
        assert_eq!(Ack::parse(&ack.to_string()), Some(Ok(ack)));
        assert_eq!(
            Ack::parse("READY node=1 incarnation=2 restarted=false backed_out=0"),
            None
        );
        assert_eq!(Ack::parse(""), None);
        assert!(matches!(
            Ack::parse("ACK 1-2-0-7 acct-000001 acct-000199"),
            Some(Err(_))
        ));
        assert!(matches!(Ack::parse("ACK 1-2-0-7 a b fifty"), Some(Err(_))));
        assert!(matches!(Ack::parse("ACK 1-2-0-7 a b 5 6"), Some(Err(_))));
    }

    #[test]
    fn account_keys_sort_by_number() {
        assert_eq!(account_key(0), "acct-000000");
        assert_eq!(account_key(199), "acct-000199");
        assert!(account_key(9) < account_key(10));
    }

    #[test]
    fn backoff_stays_small() {
        let mut rng = rand::rng();
        for tries in 1..200 {
            assert!(backoff(tries, &mut rng) <= Duration::from_millis(20));
        }
    }
}
