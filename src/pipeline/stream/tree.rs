//! Partials merged as they come, two of a size at a time.

use super::*;

/// One round's partials of one detector, merged as they come two of a size at a time (a
/// binary counter): a batch's sorted key lists are not merged into the whole round's again and
/// again, so merging b batches of n rows in all costs O(n log b), not O(n b). The merges are
/// exact, associative and commutative, so the result is the state one merge order gives.
pub(super) struct Tree<T> {
    /// Partials, each the merge of 2^level batches, levels decreasing.
    stack: Vec<(u32, T)>,
}

impl<T> Default for Tree<T> {
    fn default() -> Self {
        Tree { stack: Vec::new() }
    }
}

/// How two partials of a round merge.
pub(super) type Merge<'a, T> = &'a dyn Fn(&mut T, &T) -> Result<(), ScanError>;

impl<T> Tree<T> {
    /// Add a batch's partial.
    pub(super) fn push(&mut self, p: T, merge: Merge<'_, T>) -> Result<(), ScanError> {
        let (mut level, mut p) = (0, p);
        while self.stack.last().is_some_and(|(l, _)| *l == level) {
            if let Some((_, mut a)) = self.stack.pop() {
                merge(&mut a, &p)?;
                p = a;
                level += 1;
            }
        }
        self.stack.push((level, p));
        Ok(())
    }

    /// The one partial of a tree holding exactly one.
    pub(super) fn only(&self) -> Option<&T> {
        match self.stack.as_slice() {
            [(_, p)] => Some(p),
            _ => None,
        }
    }

    /// The merge of every partial added (`empty` when there was none); the tree is emptied.
    pub(super) fn take(&mut self, empty: T, merge: Merge<'_, T>) -> Result<T, ScanError> {
        let mut all = empty;
        for (_, p) in std::mem::take(&mut self.stack) {
            merge(&mut all, &p)?;
        }
        Ok(all)
    }
}
