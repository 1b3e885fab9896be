//! The binaries' allocator: jemalloc, and the settings it reads before `main`. Each binary's
//! `main.rs` says `runtime::jemalloc!(…);` once.
//!
//! - jemalloc: glibc's malloc and free took an eighth of the gateway's CPU under load (perf,
//!   docs/benchmarks.md), and its per-thread arenas hold memory a long-running server never
//!   gives back.
//! - One arena ([`JEMALLOC_CONF`]): by default jemalloc makes four per core and binds each
//!   thread to one. After the same 3,000 events at 300/s the gateway kept either ~10 or ~20 MiB
//!   of heap, depending on how its threads had landed on arenas (each kept its own free
//!   pages); with one arena it was ~10 MiB every time, with the same CPU per event and
//!   latency (thread caches serve most allocations without the arena's lock; on a few cores
//!   the lock is not contended). docs/benchmarks.md has the runs.
//! - The worker's freed pages go back to the system after about a second
//!   (`dirty_decay_ms:1000`) rather than ten: after a burst (the closed loop) the two
//!   processes kept ~3 MiB less, with the same CPU per event and throughput (medians of
//!   three interleaved runs: 1.86 against 1.92 ms, 928 against 903 accepted/s). Returning
//!   them at once (`dirty_decay_ms:0`) kept ~5 MiB less but looked costlier (2.05 ms,
//!   829/s), as every free that empties a page becomes a system call; docs/benchmarks.md has
//!   the runs. The gateway keeps them ten seconds ([`GATEWAY_JEMALLOC_CONF`]).

/// What jemalloc reads from the binary (`malloc_conf`), before any allocation.
pub const JEMALLOC_CONF: &std::ffi::CStr = c"narenas:1,dirty_decay_ms:1000";
/// The gateway's: freed pages stay ten seconds. Once it stopped making its API documents at
/// start-up (whose garbage had been a heap already faulted in), a one-second decay made it
/// return and fault pages again under load: 6-15 % fewer accepted/s in the closed loop and up
/// to 13 % more CPU per event at 300/s. With ten seconds, gateway and worker ended the closed
/// loop with 5.4 MiB less than before that change and the express lane's (`e413155`), and 8 %
/// more accepted/s; 2.9 MiB less at 300/s, with the same CPU (docs/benchmarks.md).
pub const GATEWAY_JEMALLOC_CONF: &std::ffi::CStr = c"narenas:1,dirty_decay_ms:10000";

/// Installs jemalloc as the global allocator with [`JEMALLOC_CONF`] (or the settings and
/// decay the binary names: `jemalloc!(GATEWAY_JEMALLOC_CONF, 10_000)`), and a test that jemalloc
/// read them (the caller needs `tikv-jemallocator`, and `tikv-jemalloc-sys` for the test).
#[macro_export]
macro_rules! jemalloc {
    () => {
        $crate::jemalloc!($crate::allocator::JEMALLOC_CONF, 1000);
    };
    ($conf:expr, $dirty_decay_ms:literal) => {
        #[global_allocator]
        static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

        /// jemalloc's `malloc_conf` (prefixed by `tikv-jemalloc-sys`): see
        /// [`runtime::allocator`].
        #[allow(non_upper_case_globals)]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        pub static malloc_conf: Option<&'static std::ffi::c_char> =
            // SAFETY: a pointer to the first byte of a static C string, which lives for ever.
            Some(unsafe { &*$conf.as_ptr() });

        #[cfg(test)]
        mod jemalloc_settings {
            #[test]
            fn jemalloc_reads_the_settings_the_binary_gives_it() {
                let mut narenas: std::ffi::c_uint = 0;
                let mut size = std::mem::size_of::<std::ffi::c_uint>();
                // SAFETY: `opt.narenas` is an unsigned int, and `narenas` one.
                let read = unsafe {
                    tikv_jemalloc_sys::mallctl(
                        c"opt.narenas".as_ptr(),
                        (&mut narenas as *mut std::ffi::c_uint).cast(),
                        &mut size,
                        std::ptr::null_mut(),
                        0,
                    )
                };
                assert_eq!(read, 0, "mallctl opt.narenas");
                assert_eq!(narenas, 1, "jemalloc runs with one arena");
                let mut decay: isize = 0;
                let mut size = std::mem::size_of::<isize>();
                // SAFETY: `opt.dirty_decay_ms` is an ssize_t, and `decay` one.
                let read = unsafe {
                    tikv_jemalloc_sys::mallctl(
                        c"opt.dirty_decay_ms".as_ptr(),
                        (&mut decay as *mut isize).cast(),
                        &mut size,
                        std::ptr::null_mut(),
                        0,
                    )
                };
                assert_eq!(read, 0, "mallctl opt.dirty_decay_ms");
                assert_eq!(
                    decay, $dirty_decay_ms,
                    "freed pages go back after the binary's delay"
                );
            }
        }
    };
}
