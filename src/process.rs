//! Process-wide settings that every command shares. They belong to the binary, not to the library crates: a
//! library has no business changing its host's allocator or scheduling policy.

/// Applied once, first thing in `main`, before any thread exists, so that every thread inherits them.
pub fn configure() {
    keep_freed_memory();
    batch_scheduling();
}

/// Both halves of revgen free and allocate the same large buffers over and over: the trainer its activations and
/// the `[batch·seq, 50257]` logits (51 MB at 4 × 64 tokens), the pipeline its Arrow column buffers and 4 MiB
/// chunks. By default glibc maps each large one, the kernel faults in and zeroes every page, and unmaps it when
/// freed (and trims the heap's top). Keeping freed memory in the heap instead: tiny training preset 906 → 1,800
/// tokens/s on LibTorch, +60% on flex; `prepare` spent 3.5% of its samples in page faults, and is ~3% faster
/// without them. Costs: the heap keeps its high-water mark (docs/training.md).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// revgen's jobs are throughput work: a pipeline of threads (inflate, parse, query, shard writers, syncs) handing
/// chunks to each other. Under the default policy each hand-off's wake-up may preempt the thread it lands beside,
/// and on 2 cores the inflating thread (the critical path) waited runnable for 0.23 s of a 1.5 s `prepare` while
/// the other core idled. SCHED_BATCH (as `chrt -b 0` sets it; no privilege needed) turns wake-up preemption off:
/// `prepare` ~2% faster alone, ~5% with the allocator setting above (docs/bench-prepare.md).
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_setscheduler reads the parameter struct only; pid 0 is the calling thread.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        // Refused only by seccomp-like sandboxes; the default policy is then as good as before, so the error is moot.
        let _ = libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}
