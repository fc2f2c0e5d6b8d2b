//! Blocking WASI calls bounded by the call's deadline.
//!
//! Epoch interruption only fires while wasm code runs: a guest blocked inside
//! a host call (`time.sleep`, `select` with a timeout, a poll on a clock) would
//! run past its time limit, keep a daemon's slot and ignore an interrupt. So the
//! two `wasi:io/poll` functions every blocking wait of the guest goes through
//! (`poll` and `pollable.block`; the preview-1 adapter's `poll_oneoff`, and so
//! `nanosleep`, use them too) are replaced by versions that wait in slices: after
//! each slice they check the deadline and the link, and end the call with the
//! same typed failure an epoch deadline gives.

use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable};

use super::instance::HostState;

/// How long one slice of a blocking wait lasts at most: the latency of an
/// interrupt (or of noticing a vanished peer) while the guest is blocked.
const SLICE: Duration = Duration::from_millis(20);

/// The `wasi:io/poll` interface as wasmtime-wasi registers it; the component's
/// imports (any 0.2.x) resolve to it.
const POLL_INTERFACE: &str = "wasi:io/poll@0.2.12";

/// Replaces wasmtime-wasi's blocking `poll` and `pollable.block` with bounded
/// ones. Shadowing an interface replaces it whole, so the `pollable` resource
/// (the same host type, so other interfaces' pollables still match) and its
/// non-blocking `ready` are defined again as wasmtime-wasi defines them.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL_INTERFACE)?;
    poll.resource(
        "pollable",
        ResourceType::host::<DynPollable>(),
        |mut store, rep| {
            HostPollable::drop(store.data_mut().resource_table(), Resource::new_own(rep))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.ready",
        |mut store, (pollable,): (Resource<DynPollable>,)| {
            let table = store.data_mut().resource_table();
            let ready = wasmtime_wasi::runtime::in_tokio(HostPollable::ready(table, pollable))?;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "poll",
        |mut store, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let ready = poll_bounded(store.data_mut(), &pollables)?;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store, (pollable,): (Resource<DynPollable>,)| {
            poll_bounded(store.data_mut(), std::slice::from_ref(&pollable))?;
            Ok(())
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Waits until one of `pollables` is ready, in slices, ending the call when its
/// time is up or the local side interrupts or goes away. The link is looked at
/// only once a slice passed: a poll that is ready at once (epoch ticks watch the
/// link meanwhile) costs no extra system call.
fn poll_bounded(
    state: &mut HostState,
    pollables: &[Resource<DynPollable>],
) -> wasmtime::Result<Vec<u32>> {
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            state.check_link()?;
        }
        let slice = state.blocking_slice(SLICE)?;
        if pollables.is_empty() {
            // Nothing to wait for: poll(2) with no descriptors and no timeout
            // waits forever (`select()` of nothing, an asyncio loop whose
            // every task awaits a future nobody resolves: python3 hangs).
            // wasmtime-wasi traps on an empty list; here it waits until the
            // deadline, an interrupt or the end of the link.
            std::thread::sleep(slice);
            continue;
        }
        let borrowed = pollables
            .iter()
            .map(|p| Resource::new_borrow(p.rep()))
            .collect();
        let table = state.resource_table();
        let ready = wasmtime_wasi::runtime::in_tokio(async move {
            tokio::time::timeout(slice, table.poll(borrowed)).await
        });
        if let Ok(ready) = ready {
            return ready;
        }
    }
}
