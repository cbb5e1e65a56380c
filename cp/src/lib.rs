//! rvs control plane library.

pub mod adm;
