//! The bank's schema: two tables, their keys and values, creating the bank
//! and reading its total.
//!
//! Table `bank`: key `acct-NNNNNN` (six digits, from 0), value the balance
//! as decimal ASCII. Table `transfers`: key a transfer id
//! `<node>-<incarnation>-<thread>-<seq>`, value `<from>,<to>,<amount>` with
//! account keys ([`journal_entry`]).

use understudy::{Node, RetryPolicy, Transaction};

use crate::error::CliError;

/// The accounts table.
pub const ACCOUNTS_TABLE: &str = "bank";
/// The journal of transfers.
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

/// The key of account `i`.
pub fn account_key(i: u32) -> String {
    format!("acct-{i:06}")
}

/// A transfer's entry in the journal table: `from,to,amount`. The
/// workload writes it and the check compares against it.
pub fn journal_entry(from: &str, to: &str, amount: u64) -> String {
    format!("{from},{to},{amount}")
}

/// The balance `key` holds, read in `txn`.
pub fn balance(txn: &mut Transaction, key: &str) -> Result<u64, CliError> {
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
        understudy::retry(&RetryPolicy::default(), |_| {
            let mut txn = node.begin()?;
            for i in first..last {
                txn.put(ACCOUNTS_TABLE, account_key(i).as_bytes(), value.as_bytes())?;
            }
            Ok::<_, CliError>(txn.commit()?)
        })?;
    }
    Ok(total)
}

/// Reads every balance in one transaction (a consistent picture, even with
/// transfers running elsewhere) and returns the sum.
pub fn total_balance(node: &Node, accounts: u32) -> Result<u64, CliError> {
    understudy::retry(&RetryPolicy::default(), |_| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_keys_sort_by_number() {
        assert_eq!(account_key(0), "acct-000000");
        assert_eq!(account_key(199), "acct-000199");
        assert!(account_key(9) < account_key(10));
    }
}
