//! Link-time settings of the `cclake` binary.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    // Optimised builds fold identical functions at link time: DataFusion's generic code has
    // many byte-identical instances (182 -> 173 MB for release without symbols). Rust makes
    // no promise that distinct functions have distinct addresses, so folding them is sound.
    // x86_64 Linux links with rust-lld by default (Rust 1.90+), which knows the flag.
    if var("PROFILE") == "release" && var("TARGET") == "x86_64-unknown-linux-gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,--icf=all");
    }
}
