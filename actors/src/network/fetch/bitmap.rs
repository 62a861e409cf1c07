//! Which leaves of a dataset a fetch still needs, one bit each: a 1 GiB dataset's 16,384 leaves
//! take 2 KiB, where a set of their 64-bit indices would take over 128 KiB.

/// One bit per leaf.
pub(super) struct Bitmap(Vec<u64>);

impl Bitmap {
    pub(super) fn new(bits: u64) -> Self {
        Self(vec![0; usize::try_from(bits.div_ceil(64)).unwrap_or(0)])
    }

    pub(super) fn contains(&self, i: u64) -> bool {
        let word = usize::try_from(i / 64).ok().and_then(|w| self.0.get(w));
        word.is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Clears bit `i`.
    pub(super) fn remove(&mut self, i: u64) {
        if let Some(word) = usize::try_from(i / 64).ok().and_then(|w| self.0.get_mut(w)) {
            *word &= !(1 << (i % 64));
        }
    }

    /// Sets bit `i`; false when it was set already or is out of range.
    pub(super) fn insert(&mut self, i: u64) -> bool {
        let Some(word) = usize::try_from(i / 64).ok().and_then(|w| self.0.get_mut(w)) else {
            return false;
        };
        let bit = 1 << (i % 64);
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::Bitmap;

    #[test]
    fn a_bitmap_sets_each_bit_once_and_refuses_out_of_range() {
        let mut b = Bitmap::new(130);
        for i in [0, 63, 64, 127, 128, 129] {
            assert!(!b.contains(i));
            assert!(b.insert(i), "{i} is new");
            assert!(!b.insert(i), "{i} is set already");
            assert!(b.contains(i));
        }
        assert!(!b.contains(1) && !b.contains(65));
        b.remove(63);
        assert!(
            !b.contains(63) && b.contains(64),
            "only that bit is cleared"
        );
        assert!(b.insert(63), "wanted again");
        assert!(!b.insert(192), "past the last word");
        assert!(!b.contains(u64::MAX));
    }
}
