//! The per-worker connection table.
