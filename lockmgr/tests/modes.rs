//! Properties of the compatibility matrix and of conversions (the lattice of
//! lock modes).
#![cfg(not(loom))]

use lockmgr::LockMode;
use proptest::prelude::*;

fn mode() -> impl Strategy<Value = LockMode> {
    prop::sample::select(LockMode::ALL.to_vec())
}

proptest! {
    #[test]
    fn compatibility_is_symmetric(a in mode(), b in mode()) {
        prop_assert_eq!(a.compatible(b), b.compatible(a));
    }

    #[test]
    fn x_excludes_everything_and_is_everything_but_x(a in mode()) {
        prop_assert!(!LockMode::X.compatible(a));
        prop_assert_eq!(LockMode::IS.compatible(a), a != LockMode::X);
    }

    #[test]
    fn a_stronger_mode_is_compatible_with_less(a in mode(), b in mode(), c in mode()) {
        if a.covers(b) && a.compatible(c) {
            prop_assert!(b.compatible(c));
        }
    }

    #[test]
    fn covers_is_a_partial_order(a in mode(), b in mode(), c in mode()) {
        prop_assert!(a.covers(a));
        if a.covers(b) && b.covers(a) {
            prop_assert_eq!(a, b);
        }
        if a.covers(b) && b.covers(c) {
            prop_assert!(a.covers(c));
        }
    }

    #[test]
    fn supremum_is_the_least_upper_bound(a in mode(), b in mode(), c in mode()) {
        let s = a.supremum(b);
        prop_assert!(s.covers(a) && s.covers(b));
        if c.covers(a) && c.covers(b) {
            prop_assert!(c.covers(s));
        }
        prop_assert_eq!(s, b.supremum(a));
        prop_assert_eq!(a.supremum(a), a);
        prop_assert_eq!(s.supremum(c), a.supremum(b.supremum(c)));
    }

    /// What makes conversions and the merging of a failed node's locks safe:
    /// the supremum is compatible with exactly what both modes are.
    #[test]
    fn supremum_keeps_exactly_the_common_compatibility(a in mode(), b in mode(), c in mode()) {
        prop_assert_eq!(a.supremum(b).compatible(c), a.compatible(c) && b.compatible(c));
    }

    #[test]
    fn write_modes_are_those_covering_ix(a in mode()) {
        prop_assert_eq!(a.is_write(), a.covers(LockMode::IX));
    }
}
