//! Lock modes, their compatibility matrix and their conversions.
//!
//! The five modes of multiple-granularity locking (Gray et al., "Granularity
//! of Locks and Degrees of Consistency in a Shared Data Base", 1976):
//!
//! | held ↓ / requested → | IS | IX | S | SIX | X |
//! |---|---|---|---|---|---|
//! | IS  | ✓ | ✓ | ✓ | ✓ | ✗ |
//! | IX  | ✓ | ✓ | ✗ | ✗ | ✗ |
//! | S   | ✓ | ✗ | ✓ | ✗ | ✗ |
//! | SIX | ✓ | ✗ | ✗ | ✗ | ✗ |
//! | X   | ✗ | ✗ | ✗ | ✗ | ✗ |
//!
//! The modes form a lattice ordered by strength (IS < IX, IS < S, IX < SIX,
//! S < SIX, SIX < X). A conversion replaces a held mode by the least upper
//! bound of the held and the requested mode ([`LockMode::supremum`]), so an S
//! holder asking for IX ends up with SIX, and an S holder asking for IS keeps S.

use std::fmt;

/// A lock mode. The names are those of the literature, kept in capitals so
/// that code reads like the compatibility matrix it implements.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockMode {
    /// Intention shared: the holder will take S locks on finer resources.
    IS,
    /// Intention exclusive: the holder will take X (or S) locks on finer resources.
    IX,
    /// Shared: read.
    S,
    /// Shared with intention exclusive: read all, change some finer resources.
    SIX,
    /// Exclusive: change.
    X,
}

impl LockMode {
    /// Every mode, weakest first (a linear extension of the lattice order).
    pub const ALL: [LockMode; 5] = [LockMode::IS, LockMode::IX, LockMode::S, LockMode::SIX, LockMode::X];

    /// The mode's number in the wire protocol and the coordinator's durable
    /// record: IS 1, IX 2, S 3, SIX 4, X 5.
    pub fn code(self) -> u8 {
        match self {
            LockMode::IS => 1,
            LockMode::IX => 2,
            LockMode::S => 3,
            LockMode::SIX => 4,
            LockMode::X => 5,
        }
    }

    /// The mode numbered `code` (see [`LockMode::code`]), if any.
    pub fn from_code(code: u8) -> Option<LockMode> {
        LockMode::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Whether a lock in `self` held by one owner can coexist with a lock in
    /// `other` held by another owner. Symmetric.
    pub const fn compatible(self, other: LockMode) -> bool {
        use LockMode::{IS, IX, S, SIX};
        matches!(
            (self, other),
            (IS, IS | IX | S | SIX) | (IX, IS | IX) | (S, IS | S) | (SIX, IS)
        )
    }

    /// Whether `self` is at least as strong as `other`: everything `other`
    /// allows the holder to do, `self` allows too.
    pub const fn covers(self, other: LockMode) -> bool {
        use LockMode::{IS, IX, S, SIX, X};
        match self {
            X => true,
            SIX => !matches!(other, X),
            S => matches!(other, IS | S),
            IX => matches!(other, IS | IX),
            IS => matches!(other, IS),
        }
    }

    /// The least upper bound of two modes: the mode an owner holds after
    /// converting from `self` with a request for `other`.
    pub const fn supremum(self, other: LockMode) -> LockMode {
        use LockMode::{IX, S, SIX};
        if self.covers(other) {
            self
        } else if other.covers(self) {
            other
        } else {
            // The only incomparable pair in the lattice is {IX, S}.
            debug_assert!(matches!((self, other), (IX, S) | (S, IX)));
            SIX
        }
    }

    /// Whether a lock in this mode protects changes, and so must outlive its
    /// holder's node failure as a retained lock (IX, SIX, X). S and IS locks
    /// of a failed node protect nothing any more and are simply dropped.
    pub const fn is_write(self) -> bool {
        matches!(self, LockMode::IX | LockMode::SIX | LockMode::X)
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LockMode::IS => "IS",
            LockMode::IX => "IX",
            LockMode::S => "S",
            LockMode::SIX => "SIX",
            LockMode::X => "X",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::LockMode::{self, IS, IX, S, SIX, X};

    #[test]
    fn matrix_matches_the_literature() {
        // Rows: held; columns: requested; order IS, IX, S, SIX, X.
        let expected = [
            [true, true, true, true, false],
            [true, true, false, false, false],
            [true, false, true, false, false],
            [true, false, false, false, false],
            [false, false, false, false, false],
        ];
        for (row, held) in LockMode::ALL.iter().enumerate() {
            for (col, requested) in LockMode::ALL.iter().enumerate() {
                assert_eq!(held.compatible(*requested), expected[row][col], "{held} vs {requested}");
            }
        }
    }

    #[test]
    fn conversions_named_in_the_design() {
        assert_eq!(S.supremum(IX), SIX);
        assert_eq!(IX.supremum(S), SIX);
        assert_eq!(IS.supremum(S), S);
        assert_eq!(S.supremum(IS), S);
        assert_eq!(S.supremum(X), X);
        assert_eq!(IS.supremum(IX), IX);
        assert_eq!(SIX.supremum(IX), SIX);
    }

    #[test]
    fn write_modes() {
        let writes: Vec<_> = LockMode::ALL.into_iter().filter(|m| m.is_write()).collect();
        assert_eq!(writes, vec![IX, SIX, X]);
    }
}
