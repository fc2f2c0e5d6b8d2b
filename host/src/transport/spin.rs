//! Waiting for a peer's answer by polling briefly before sleeping.
//!
//! On a VM a sleeping vCPU costs tens of microseconds to wake (an IPI and a
//! VM entry), more than a whole round trip's work here. A side that expects
//! an answer soon therefore polls for a short while before it blocks. With
//! one CPU to run on (e.g. under `taskset -c 0`) polling would only delay
//! the peer it waits for, so it is off there.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Default polling budget of the local side waiting for a reply.
pub const DEFAULT_CLIENT_SPIN: Duration = Duration::from_micros(100);
/// After polling this long, a poller yields its CPU between tries, in case
/// the peer it waits for shares that CPU.
pub(crate) const YIELD_AFTER: Duration = Duration::from_micros(20);
/// Default polling budget of a host waiting for the next request.
pub const DEFAULT_SERVER_SPIN: Duration = Duration::from_micros(50);

/// CPUs available to this process.
fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether polling can help: more than one CPU is available to this process.
pub(crate) fn worthwhile() -> bool {
    cpus() > 1
}

/// Counts pollers against a cap.
struct Pollers {
    active: AtomicUsize,
}

impl Pollers {
    fn enter(&'static self, cap: usize) -> Option<Permit> {
        if self.active.fetch_add(1, Ordering::Relaxed) < cap {
            Some(Permit(self))
        } else {
            self.active.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

static POLLERS: Pollers = Pollers {
    active: AtomicUsize::new(0),
};

/// The right to poll, held while polling: at most one CPU fewer than this
/// process has polls at a time, so many idle sessions of a busy server
/// never burn every CPU.
pub(crate) struct Permit(&'static Pollers);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A permit to poll, if a CPU is free for it.
pub(crate) fn permit() -> Option<Permit> {
    POLLERS.enter(cpus().saturating_sub(1))
}

/// `budget` where polling is worthwhile, else zero. `PUSHY_SPIN_US`
/// overrides the budget (0 turns polling off).
pub(crate) fn budget(default: Duration) -> Duration {
    static OVERRIDE: OnceLock<Option<Duration>> = OnceLock::new();
    let chosen = OVERRIDE
        .get_or_init(|| {
            std::env::var("PUSHY_SPIN_US")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_micros)
        })
        .unwrap_or(default);
    if worthwhile() { chosen } else { Duration::ZERO }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_capped_and_returned() {
        static LOCAL: Pollers = Pollers {
            active: AtomicUsize::new(0),
        };
        let first = LOCAL.enter(2);
        let second = LOCAL.enter(2);
        assert!(first.is_some() && second.is_some());
        assert!(LOCAL.enter(2).is_none(), "a third poller over a cap of 2");
        drop(first);
        let again = LOCAL.enter(2);
        assert!(again.is_some(), "a returned permit is handed out again");
        assert!(LOCAL.enter(0).is_none(), "one CPU: nobody polls");
        drop((second, again));
        assert_eq!(LOCAL.active.load(Ordering::Relaxed), 0);
    }
}
