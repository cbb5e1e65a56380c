//! rvs control plane library.
