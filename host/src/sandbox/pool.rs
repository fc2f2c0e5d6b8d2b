//! Instances from a pool: wasmtime's pooling allocator, sized for the guest
//! component.
//!
//! On demand, every new session maps its linear memory from the snapshot's
//! image and then takes a page fault for each page it touches, and its
//! tables are allocated and filled anew; ending it unmaps them all. On a VM
//! those faults and mappings are most of what a fresh session costs. From a
//! pool, a slot's memory stays mapped between sessions: when a session ends
//! only the pages it dirtied are reset (found with the kernel's
//! `PAGEMAP_SCAN` where it has it, Linux 6.7 and later), and kept resident
//! up to [`KEEP_RESIDENT`], so the next session in that slot starts on
//! warm pages.

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// What one instance of the guest component takes from the pool, with
/// room to spare (the unit test below checks the component against it).
pub(crate) const CORE_INSTANCES: u32 = 64;
pub(crate) const MEMORIES: u32 = 4;
pub(crate) const TABLES: u32 = 16;
/// Elements of the largest table (the interpreter's function table).
const TABLE_ELEMENTS: usize = 64 * 1024;
/// Bytes of a linear memory, and of a table, kept resident in a free slot
/// (reset, not unmapped). A small session dirties a few MiB: measured with
/// `perf stat -e page-faults`, 8 MiB and 512 MiB fault the same.
const KEEP_RESIDENT: usize = 16 << 20;
/// Free slots that keep their memory resident; beyond them, a freed slot's
/// memory is given back to the kernel. Bounds what an idle server holds.
const WARM_SLOTS: u32 = 8;

/// An engine for `config`, allocating from a pool of `sessions` instances
/// (the preload snapshot's build takes one before any session starts); on
/// demand when `sessions` is zero or when the pool's address space cannot
/// be reserved.
pub(super) fn engine(config: &Config, sessions: u32) -> wasmtime::Result<Engine> {
    if sessions > 0 {
        let mut pooled = config.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(sessions)));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok(engine),
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "cannot reserve the instance pool; instances are allocated on demand"
            ),
        }
    }
    Engine::new(config)
}

fn pool_config(instances: u32) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES))
        .total_memories(instances.saturating_mul(MEMORIES))
        .total_tables(instances.saturating_mul(TABLES))
        .max_core_instances_per_component(CORE_INSTANCES)
        .max_memories_per_component(MEMORIES)
        .max_tables_per_component(TABLES)
        .max_tables_per_module(TABLES)
        .table_elements(TABLE_ELEMENTS)
        // A session's own memory limit is enforced by its store's limiter.
        .max_memory_size(1 << 32)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .max_unused_warm_slots(WARM_SLOTS)
        .pagemap_scan(Enabled::Auto);
    pool
}

/// Whether `error` (from instantiating) says the pool is full.
pub(super) fn exhausted(error: &wasmtime::Error) -> bool {
    error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
}
