//! The log child's acknowledgement line, `ACK <txn> <commit_lsn>`: one per
//! commit the log acknowledged as durable, printed by `log-child` and read
//! back by the log demo that kills it. Every line is a promise the log made
//! before the process died.

use wal::{Lsn, TxnId};

/// Parses one line of the child's stdout.
pub fn parse_ack(line: &str) -> Option<(TxnId, Lsn)> {
    let mut words = line.split_whitespace();
    if words.next()? != "ACK" {
        return None;
    }
    let txn = words.next()?.parse().ok()?;
    let lsn = words.next()?.parse().ok()?;
    words.next().is_none().then_some((txn, Lsn(lsn)))
}

/// The line that acknowledges `txn`, committed at `commit`.
pub fn format_ack(txn: TxnId, commit: Lsn) -> String {
    format!("ACK {txn} {commit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ack_lines_and_nothing_else() {
        assert_eq!(parse_ack("ACK 7 4096\n"), Some((7, Lsn(4096))));
        assert_eq!(parse_ack(&format_ack(7, Lsn(4096))), Some((7, Lsn(4096))));
        assert_eq!(parse_ack("ACK 7"), None);
        assert_eq!(parse_ack("ACK 7 40 9"), None);
        assert_eq!(parse_ack("NACK 7 40"), None);
        assert_eq!(parse_ack("ACK x 40"), None);
    }
}
