//! The build script of the `gateway` and `worker` binaries: in release builds for x86-64
//! Linux, the linker lays out the functions `bench/hot-symbols.txt` lists (those the binaries
//! execute under load, from `bench/hot-code.sh`) together at the start of `.text`.
//!
//! Why: a process's resident code is not what it runs but every 64 KiB window the kernel maps
//! around each page it runs from; executed functions spread among cold ones made most of the
//! binary resident (docs/benchmarks.md, "Hot code together"). The order changes no behaviour.
//! It needs LLD, which rustc uses by default on this target since 1.90; with another
//! linker, set `PAYRAIL_NO_HOT_CODE_ORDER=1`. A name the list has and the binary lacks is
//! skipped without a warning, so a stale list only helps less.
//!
//! The same release builds pack their relative relocations (`-z pack-relative-relocs`, DT_RELR):
//! a position-independent binary's table of addresses to fix up at start-up (`.rela.dyn`),
//! 24 bytes per pointer, is read whole by the loader and stayed resident, 0.8 MiB of the
//! gateway and 0.7 of the worker; packed, it is a few KiB, with the same relocations done and
//! the same address randomisation. It needs glibc 2.36 or later where the binaries run (Debian
//! 12, the Dockerfile's base; an older one refuses to start them, naming `GLIBC_ABI_DT_RELR`);
//! elsewhere set `PAYRAIL_NO_PACKED_RELOCS=1`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=PAYRAIL_NO_HOT_CODE_ORDER");
    println!("cargo:rerun-if-env-changed=PAYRAIL_NO_PACKED_RELOCS");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let list = manifest.join("../bench/hot-symbols.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let wanted = std::env::var_os("PAYRAIL_NO_HOT_CODE_ORDER").is_none();
    if release && wanted && target == "x86_64-unknown-linux-gnu" && list.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    let packed = std::env::var_os("PAYRAIL_NO_PACKED_RELOCS").is_none();
    if release && packed && target == "x86_64-unknown-linux-gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
