//! The whole per-packet path under arbitrary input: see `rvs_dp_fuzz::lab`
//! for how the bytes are cut into frames and events.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use rvs_dp_fuzz::lab::FuzzLab;

thread_local! {
    // Built once: connections, templates, fragment slots and the clock carry
    // over between inputs, so a full table and stale entries get exercised.
    static LAB: RefCell<FuzzLab> = RefCell::new(FuzzLab::new());
}

fuzz_target!(|data: &[u8]| {
    LAB.with(|l| l.borrow_mut().run(data));
});
