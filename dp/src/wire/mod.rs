//! Zero-copy views over packet bytes, after smoltcp's wire module:
//! `new_checked` validates lengths once; after that no accessor or setter panics.
