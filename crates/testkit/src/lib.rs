//! Test support shared by the crates' test binaries and by `skein bench`: where the
//! DSL specification's data lives ([`spec`]), throwaway PostgreSQL clusters
//! ([`postgres`]), ports for servers that tests start ([`free_port`]), and the rule every
//! optional test dependency follows ([`required`]):
//! missing, a test says it was skipped and how to get what it needs; in CI, where an
//! environment variable requires it, a missing dependency fails instead.
//!
//! Nothing here is used by a running server.

pub mod postgres;
pub mod spec;

/// Whether the environment variable `var` is `1`: the dependency it names must be
/// present, so that a test that would skip fails instead (as in CI).
pub fn required(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
}

/// What a test does when something it needs is missing: panics with `why` when `var`
/// requires it, else prints one line saying the test was skipped, why, and how to get
/// what it needs. The line goes to stderr as is, past the test harness's capture of
/// `eprintln!`, so that `cargo test` shows it although the test passes.
pub fn skip(test: &str, var: &str, why: &str, how: &str) {
    use std::io::Write;
    if required(var) {
        panic!("{test}: {var}=1 but {why}; {how}");
    }
    let _ = writeln!(std::io::stderr(), "{test}: SKIPPED, {why}; {how}");
}

/// A loopback port nobody listens on right now, for a server a test starts. It is
/// taken below Linux's ephemeral range (32768 and up), where the kernel also picks the
/// local ports of outgoing connections: a port from there could be taken by one of the
/// tests' own connections before the server binds it. This process gives no port twice.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let random = std::hash::RandomState::new();
    (0u32..)
        .map(|attempt| 20_000 + (random.hash_one(attempt) % 12_000) as u16)
        .find(|port| {
            !given.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .inspect(|port| given.push(*port))
        .expect("a free port between 20000 and 32000")
}
