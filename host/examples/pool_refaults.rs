//! Page faults per fresh instance from wasmtime's pool, against how many
//! separate runs of pages the previous instance wrote: the evidence for
//! BENCHMARKS.md's account of why fresh sessions still fault.
//!
//! ```text
//! pool_refaults [ITERATIONS]
//! ```
//!
//! A module whose 8 MiB memory image covers every page; each instance
//! writes N pages two pages apart (N separate dirty runs), then reads every
//! page of the image. With the pool's `PAGEMAP_SCAN` reset, a read page
//! stays mapped for the next instance unless the reset gave it back to the
//! kernel; the faults per instance show where that happens.

use anyhow::Context;
use wasmtime::{
    Config, Enabled, Engine, Instance, InstanceAllocationStrategy, Module, PoolingAllocationConfig,
    Store,
};

const PAGES: u32 = 2048;

fn minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init().ru_minflt
    }
}

fn main() -> anyhow::Result<()> {
    let iterations: i64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("ITERATIONS")?
        .unwrap_or(200);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_memories(4)
        .total_core_instances(4)
        .max_memory_size(1 << 32)
        .linear_memory_keep_resident(16 << 20)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config)?;
    let data: String = (0..PAGES)
        .map(|page| format!("(data (i32.const {}) \"\\01\")", page * 4096))
        .collect();
    let wat = format!(
        r#"(module
          (memory 256)
          {data}
          (func (export "write") (param $n i32)
            (local $i i32)
            (block $done (loop $next
              (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
              (i32.store8 (i32.mul (local.get $i) (i32.const 8192)) (i32.const 2))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $next))))
          (func (export "read") (result i32)
            (local $i i32) (local $sum i32)
            (block $done (loop $next
              (br_if $done (i32.ge_u (local.get $i) (i32.const {PAGES})))
              (local.set $sum (i32.add (local.get $sum)
                (i32.load8_u (i32.mul (local.get $i) (i32.const 4096)))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $next)))
            (local.get $sum)))"#
    );
    let module = Module::new(&engine, wat)?;
    println!("dirty runs before | faults per instance (reads {PAGES} pages)");
    for runs in [0u32, 8, 16, 31, 33, 64, 256, 1024] {
        let mut faults = 0;
        for round in 0..iterations + 5 {
            let before = minor_faults();
            let mut store = Store::new(&engine, ());
            let instance = Instance::new(&mut store, &module, &[])?;
            instance
                .get_typed_func::<(), i32>(&mut store, "read")?
                .call(&mut store, ())?;
            instance
                .get_typed_func::<i32, ()>(&mut store, "write")?
                .call(&mut store, runs as i32)?;
            drop(store);
            // The first rounds warm the slot up.
            if round >= 5 {
                faults += minor_faults() - before;
            }
        }
        println!("{runs:>17} | {:.1}", faults as f64 / iterations as f64);
    }
    Ok(())
}
