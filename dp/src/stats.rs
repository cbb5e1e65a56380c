//! Named reasons for every packet the data plane does not forward, and the
//! per-worker counters that tally them. A drop is never silent.

pub use rvs_proto::types::DropReason;

/// A worker's drop tally, indexed by reason.
#[derive(Clone, Debug)]
pub struct DropCounters {
    pub by_reason: [u64; DropReason::COUNT],
}

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters {
            by_reason: [0; DropReason::COUNT],
        }
    }
}

impl DropCounters {
    #[inline]
    pub fn count(&mut self, r: DropReason) {
        self.by_reason[r as usize] += 1;
    }
    pub fn get(&self, r: DropReason) -> u64 {
        self.by_reason[r as usize]
    }
    pub fn total(&self) -> u64 {
        self.by_reason.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_in_discriminant_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT, "names are unique");
    }
}
