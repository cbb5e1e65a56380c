//! The fuzzed director: built here once, shared with the no-panic tests in
//! dp/tests/fuzz_regressions.rs, which include `lab.rs` by path so both drive
//! exactly the same setup.

pub mod lab;
