//! The acknowledgement a node prints for each committed transfer:
//! `ACK <id> <from> <to> <amount>`, printed only once the commit returned.
//! Every such line is a promise: that transfer is committed and must be
//! found after any crash.

use crate::bank::schema::journal_entry;

/// One acknowledged transfer, as printed by the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The transfer id, its key in the journal.
    pub id: String,
    /// The payer's account key.
    pub from: String,
    /// The payee's account key.
    pub to: String,
    /// The amount moved.
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
}
