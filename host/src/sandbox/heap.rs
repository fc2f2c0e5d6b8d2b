//! Allocator tuning for processes that move large values.
//!
//! A 16 MiB `bytes` passes through several host buffers of its size per
//! call (the frame read, the copy lifted out of the guest). glibc gives
//! blocks above 128 KiB back to the kernel when they are freed, so each call
//! faults in fresh zeroed pages again: on the VMs measured here ~8 ms per
//! 16 MiB, four times the copy itself. [`keep_large_blocks`] makes freed
//! blocks up to 32 MiB stay in the heap for the next call;
//! `return_free_memory` (called by the daemon) hands what is free back once a session ends, so a
//! long-running daemon still shrinks when idle.

/// Keeps freed blocks up to 32 MiB for reuse and trims the heap only past
/// 256 MiB of free space. For binaries (`pushy` calls it first thing); it
/// changes the whole process's allocator, which a library must not do
/// behind its user's back. Does nothing except on Linux with glibc.
pub fn keep_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it has no memory-safety
    // preconditions and glibc serialises it against concurrent allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Returns free heap memory to the kernel (e.g. after a session ended).
pub(crate) fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
