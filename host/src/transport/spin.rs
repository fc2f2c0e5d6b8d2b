//! Waiting for a peer's answer by polling briefly before sleeping.
//!
//! On a VM a sleeping vCPU costs tens of microseconds to wake (an IPI and a
//! VM entry), more than a whole round trip's work here. A side that expects
//! an answer soon therefore polls for a short while before it blocks. With
//! one CPU to run on (e.g. under `taskset -c 0`) polling would only delay
//! the peer it waits for, so it is off there.

use std::sync::OnceLock;
use std::time::Duration;

/// Default polling budget of the local side waiting for a reply.
pub const DEFAULT_CLIENT_SPIN: Duration = Duration::from_micros(100);
/// Default polling budget of a host waiting for the next request.
pub const DEFAULT_SERVER_SPIN: Duration = Duration::from_micros(50);

/// Whether polling can help: more than one CPU is available to this process.
pub(crate) fn worthwhile() -> bool {
    static MANY_CPUS: OnceLock<bool> = OnceLock::new();
    *MANY_CPUS.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
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
