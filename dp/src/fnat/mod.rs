//! FULLNAT building blocks (doc to follow).

pub mod laddr;
pub mod proxy;
pub mod segment;
pub mod seq;
pub mod toa;
