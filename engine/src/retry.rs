//! Retrying: what to do with an error that a second try may cure.
//!
//! Two kinds of retry live here, written once for the whole engine and its
//! users:
//! - [`retry`] runs a piece of work again after a retryable error
//!   ([`Error::is_retryable`]: a deadlock victim, a lock retained by a
//!   failed node, a lock wait that timed out), with a short random backoff
//!   so that two deadlocked transactions do not meet again at once, up to a
//!   bounded number of tries. [`crate::Node::run`] wraps a whole transaction
//!   in it.
//! - [`until`] keeps trying a step whose refusal is temporary (a log a
//!   counterpart still holds, a coordinator still starting) until a
//!   deadline.
//!
//! Neither ever retries an error it was not told is retryable: a failed
//! sync, a corrupt page or a lost lease end the work at once.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::Error;

/// How [`retry`] retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after the first before the last error is returned.
    pub max_retries: u32,
    /// The longest pause before a try; the n-th retry pauses a random time
    /// up to `n` times [`RetryPolicy::step`], and never more than this.
    pub max_backoff: Duration,
    /// How much the longest pause grows per retry.
    pub step: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 100,
            max_backoff: Duration::from_millis(20),
            step: Duration::from_millis(1),
        }
    }
}

impl RetryPolicy {
    /// A random pause before retry number `tries` (from 1): at least 100 µs,
    /// at most `tries × step`, capped at `max_backoff`.
    pub fn backoff(&self, tries: u32) -> Duration {
        let ceiling = self.step.saturating_mul(tries.max(1)).min(self.max_backoff);
        let floor = Duration::from_micros(100).min(ceiling);
        rand::rng().random_range(floor..=ceiling)
    }
}

/// Something that can tell whether a second try of the work that failed
/// with it may succeed.
pub trait Retryable {
    /// Whether retrying the whole piece of work may succeed.
    fn is_retryable(&self) -> bool;
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        Error::is_retryable(self)
    }
}

/// Runs `attempt` until it succeeds, fails with an error that is not
/// retryable, or has been retried `policy.max_retries` times (the last
/// error is returned then), pausing [`RetryPolicy::backoff`] before each
/// retry. `attempt` is told how many retries came before it.
pub fn retry<T, E: Retryable>(policy: &RetryPolicy, mut attempt: impl FnMut(u32) -> Result<T, E>) -> Result<T, E> {
    let mut tries = 0;
    loop {
        match attempt(tries) {
            Err(e) if e.is_retryable() && tries < policy.max_retries => {
                tries += 1;
                std::thread::sleep(policy.backoff(tries));
            }
            other => return other,
        }
    }
}

/// Runs `attempt` until it returns anything but an error `temporary`
/// accepts, or `deadline` passes (the last result is returned then),
/// pausing `pause` between tries.
pub(crate) fn until<T, E>(
    deadline: Instant,
    pause: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
    temporary: impl Fn(&E) -> bool,
) -> Result<T, E> {
    loop {
        match attempt() {
            Err(e) if temporary(&e) && Instant::now() < deadline => std::thread::sleep(pause),
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flaky(bool);
    impl Retryable for Flaky {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn retries_only_retryable_errors_and_only_so_often() {
        let policy = RetryPolicy {
            max_retries: 3,
            max_backoff: Duration::from_micros(200),
            step: Duration::from_micros(100),
        };
        let mut calls = 0;
        let r: Result<(), Flaky> = retry(&policy, |_| {
            calls += 1;
            Err(Flaky(true))
        });
        assert!(r.is_err());
        assert_eq!(calls, 4, "the first try and three retries");

        let mut calls = 0;
        let r: Result<(), Flaky> = retry(&policy, |_| {
            calls += 1;
            Err(Flaky(false))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1, "an error retrying cannot cure ends the work");

        let r: Result<u32, Flaky> = retry(&policy, |n| if n < 2 { Err(Flaky(true)) } else { Ok(n) });
        assert_eq!(r.ok(), Some(2));
    }

    #[test]
    fn backoff_stays_within_its_bounds() {
        let policy = RetryPolicy::default();
        for tries in 1..200 {
            let b = policy.backoff(tries);
            assert!(b <= policy.max_backoff && b >= Duration::from_micros(100), "{b:?}");
        }
    }

    #[test]
    fn until_gives_up_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(20);
        let mut calls = 0;
        let r: Result<(), &str> = until(
            deadline,
            Duration::from_millis(2),
            || {
                calls += 1;
                Err("busy")
            },
            |_| true,
        );
        assert_eq!(r, Err("busy"));
        assert!(calls >= 2);
        assert!(Instant::now() >= deadline);
    }
}
