//! The state of the dump series on a given day: per document a u32 version, with the top
//! bit marking a deleted document. Everything else is regenerated from the seed.
//!
//! Day 0 holds the initial documents, all at version 0. Each later day, per collection and
//! in this order: a `churn` share of the live documents is updated in place (version + 1),
//! a `delete` share of the live documents is deleted (disjoint from the updated ones), and
//! `append` × (initial size) new documents are added at the end. The chosen documents are
//! an exact uniform random sample (selection sampling, one pass), so churn is scattered.
//! Replaying day d touches only (seed, d, collection) random streams: the series is a pure
//! function of the parameters.

use crate::rng::{key, Rng};

pub const DELETED: u32 = 1 << 31;
const STREAM_DAY: u64 = 0xDA7;

/// How the series evolves. Shares are fractions in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Evolution {
    pub seed: u64,
    /// Documents on day 0, all collections together.
    pub docs: u64,
    pub collections: u32,
    pub churn: f64,
    pub delete: f64,
    pub append: f64,
}

/// What changed on the last replayed day (all zero on day 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayChanges {
    pub updated: u64,
    pub deleted: u64,
    pub appended: u64,
}

/// One collection's documents in natural order.
#[derive(Clone, Debug)]
pub struct CollectionState {
    pub versions: Vec<u32>,
    /// Day-0 size; appends per day are a share of it.
    pub initial: u64,
    pub live: u64,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub evolution: Evolution,
    pub day: u32,
    pub collections: Vec<CollectionState>,
    pub last_changes: DayChanges,
}

impl Series {
    /// Day 0: `docs` spread evenly over the collections (the first ones get the remainder).
    pub fn new(evolution: Evolution) -> Self {
        let n = evolution.collections.max(1) as u64;
        let collections = (0..n)
            .map(|c| {
                let size = evolution.docs / n + u64::from(c < evolution.docs % n);
                CollectionState { versions: vec![0; size as usize], initial: size, live: size }
            })
            .collect();
        Series { evolution, day: 0, collections, last_changes: DayChanges::default() }
    }

    /// Replays days 1..=day.
    pub fn at_day(evolution: Evolution, day: u32) -> Self {
        let mut s = Series::new(evolution);
        while s.day < day {
            s.advance();
        }
        s
    }

    /// Moves to the next day.
    pub fn advance(&mut self) {
        self.day += 1;
        let ev = &self.evolution;
        let mut changes = DayChanges::default();
        for (c, coll) in self.collections.iter_mut().enumerate() {
            let mut rng = Rng::new(key(&[ev.seed, STREAM_DAY, self.day as u64, c as u64]));
            let mut need_upd = rng.round(ev.churn * coll.live as f64).min(coll.live);
            let mut need_del = rng.round(ev.delete * coll.live as f64).min(coll.live - need_upd);
            let appended = rng.round(ev.append * coll.initial as f64);
            let deleted = need_del;
            changes.updated += need_upd;
            changes.deleted += need_del;
            changes.appended += appended;

            // Selection sampling: each live document is updated with probability
            // need_upd / remaining and deleted with need_del / remaining.
            let mut remaining = coll.live;
            for v in coll.versions.iter_mut() {
                if need_upd + need_del == 0 {
                    break;
                }
                if *v & DELETED != 0 {
                    continue;
                }
                let x = rng.below(remaining);
                if x < need_upd {
                    *v += 1;
                    need_upd -= 1;
                } else if x < need_upd + need_del {
                    *v |= DELETED;
                    need_del -= 1;
                }
                remaining -= 1;
            }
            // Selection sampling always completes its sample before running out of documents.
            debug_assert_eq!(need_upd + need_del, 0);
            coll.live -= deleted;
            coll.versions.resize(coll.versions.len() + appended as usize, 0);
            coll.live += appended;
        }
        self.last_changes = changes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(docs: u64, collections: u32) -> Evolution {
        Evolution { seed: 5, docs, collections, churn: 0.01, delete: 0.001, append: 0.002 }
    }

    fn live(c: &CollectionState) -> u64 {
        c.versions.iter().filter(|v| **v & DELETED == 0).count() as u64
    }

    #[test]
    fn day_zero_spreads_docs() {
        let s = Series::new(ev(10, 3));
        let sizes: Vec<usize> = s.collections.iter().map(|c| c.versions.len()).collect();
        assert_eq!(sizes, [4, 3, 3]);
        assert_eq!(s.last_changes, DayChanges::default());
    }

    #[test]
    fn daily_changes_match_the_shares() {
        let mut s = Series::new(ev(200_000, 2));
        for day in 1..=5 {
            let before: Vec<Vec<u32>> = s.collections.iter().map(|c| c.versions.clone()).collect();
            let live_before: u64 = s.collections.iter().map(|c| c.live).sum();
            s.advance();
            let ch = s.last_changes;
            let exp_upd = 0.01 * live_before as f64;
            assert!((ch.updated as f64 - exp_upd).abs() <= 2.0, "day {day}: {ch:?}");
            assert!((ch.deleted as f64 - 0.001 * live_before as f64).abs() <= 2.0);
            assert!((ch.appended as f64 - 400.0).abs() <= 2.0);
            let (mut upd, mut del, mut app) = (0, 0, 0);
            for (c, old) in s.collections.iter().zip(&before) {
                assert_eq!(c.live, live(c));
                app += (c.versions.len() - old.len()) as u64;
                for (new, old) in c.versions.iter().zip(old) {
                    if new & DELETED != 0 && old & DELETED == 0 {
                        del += 1;
                    } else if new != old {
                        assert_eq!(*new, old + 1);
                        upd += 1;
                    }
                }
            }
            assert_eq!((upd, del, app), (ch.updated, ch.deleted, ch.appended));
        }
    }

    #[test]
    fn churn_is_scattered() {
        let mut s = Series::new(ev(100_000, 1));
        s.advance();
        // The updated documents fall in every tenth of the day-0 documents.
        let v = &s.collections[0].versions[..100_000];
        for tenth in v.chunks(10_000) {
            let n = tenth.iter().filter(|x| **x == 1).count();
            assert!((50..=150).contains(&n), "{n}");
        }
    }

    #[test]
    fn replay_is_deterministic_and_depends_on_seed() {
        let a = Series::at_day(ev(5_000, 2), 4);
        let b = Series::at_day(ev(5_000, 2), 4);
        assert_eq!(a.collections[1].versions, b.collections[1].versions);
        let mut other = ev(5_000, 2);
        other.seed = 6;
        let c = Series::at_day(other, 4);
        assert_ne!(a.collections[1].versions, c.collections[1].versions);
    }

    #[test]
    fn full_churn_and_tiny_collections_work() {
        let mut e = ev(3, 5);
        e.churn = 1.0;
        e.delete = 1.0;
        let s = Series::at_day(e, 3);
        assert!(s.collections.iter().all(|c| c.live == live(c)));
    }
}
