//! The planned detectors' rounds together: one engine reads the whole input on one machine;
//! over partitions, one engine per partition folds in its rows and exports its partials
//! ([`Engine::export`]), and the engine that plans the scan absorbs them in any order
//! ([`Engine::absorb`]) before finalising the round.

use super::*;

/// The planned detectors' rounds and what they have gathered.
pub(super) struct Engine {
    drivers: Vec<(&'static str, Driver, f64)>,
    fitted: Vec<Option<Box<dyn Fitted>>>,
    names: Vec<String>,
    counts: Vec<u64>,
    slice_groups: u64,
    /// Whether a detector's round is finalised only once a later round needs it (or at the
    /// end, [`Engine::settle`]), and per detector the round left to finalise.
    defer: bool,
    pending: Vec<Option<usize>>,
}

impl Engine {
    /// Rounds of the `planned` detectors over `n` rows of classes `names` (`counts` rows each)
    /// with `dims`-dimensional embeddings; round 2's near keys are cut into slices of
    /// `slice_groups` exact groups.
    pub(super) fn new(
        opts: &ScanOptions,
        planned: &[Planned],
        (names, counts): (Vec<String>, Vec<u64>),
        dims: usize,
        n: usize,
        slice_groups: u64,
    ) -> Result<Engine, ScanError> {
        let mut drivers: Vec<(&'static str, Driver, f64)> = Vec::with_capacity(planned.len());
        let empty = toml::Table::new();
        for p in planned {
            let code = p.detector.meta().code;
            let params = opts.detector_params.get(code).unwrap_or(&empty);
            drivers.push((code, Driver::new(code, params, names.len(), dims, n)?, 0.0));
        }
        // duplicate detectors with the same normalisation share round 1's exact keys: the
        // first makes them, the others are handed a copy when the round is finalised
        for i in 0..drivers.len() {
            let Some(norm) = drivers[i].1.key_normalization() else {
                continue;
            };
            let owner = (0..i).find(|&j| drivers[j].1.key_normalization() == Some(norm));
            drivers[i].1.set_borrows(owner);
        }
        Ok(Engine {
            fitted: drivers.iter().map(|_| None).collect(),
            pending: drivers.iter().map(|_| None).collect(),
            defer: false,
            drivers,
            names,
            counts,
            slice_groups,
        })
    }

    /// Finalise a detector's round only when a later round reads that detector's state, and
    /// the rest at [`Engine::settle`]: over partitions, where each task finalises the earlier
    /// rounds itself, TRIG001's fit (its largest) is then made once, for the scores.
    pub(super) fn deferring(mut self) -> Engine {
        self.defer = true;
        self
    }

    /// Finalise the rounds left pending (see [`Engine::deferring`]).
    pub(super) fn settle(&mut self) -> Result<(), ScanError> {
        for i in 0..self.drivers.len() {
            if let Some(round) = self.pending[i].take() {
                self.finish_one(i, round)?;
            }
        }
        Ok(())
    }

    fn finish_one(&mut self, i: usize, round: usize) -> Result<(), ScanError> {
        let (code, d, secs) = &mut self.drivers[i];
        let t = Instant::now();
        if let Some(done) =
            d.finish_round(code, round, &self.names, &self.counts, self.slice_groups)?
        {
            self.fitted[i] = Some(done);
        }
        *secs += t.elapsed().as_secs_f64();
        release_freed();
        Ok(())
    }

    /// Whether round `round` (1 to 3) has work.
    pub(super) fn has_round(&self, round: usize) -> bool {
        round != 3 || self.drivers.iter().any(|(_, d, _)| d.has_round_3())
    }

    /// Whether round `round` reads the embeddings.
    pub(super) fn reads_x(&self, round: usize) -> bool {
        self.drivers.iter().any(|(_, d, _)| d.reads_x(round))
    }

    /// Fold one batch into round `round`'s partials (the detectors side by side).
    pub(super) fn update(&mut self, round: usize, rows: &Rows) -> Result<(), ScanError> {
        let counts = &self.counts;
        self.drivers.par_iter_mut().try_for_each(|(code, d, secs)| {
            let t = Instant::now();
            d.update(code, round, rows, counts)?;
            *secs += t.elapsed().as_secs_f64();
            Ok::<(), ScanError>(())
        })
    }

    /// Finalise round `round` for every detector (deferring: for those a later round reads).
    pub(super) fn finish_round(&mut self, round: usize) -> Result<(), ScanError> {
        if self.defer {
            for i in 0..self.drivers.len() {
                let d = &self.drivers[i].1;
                let later = (round + 1..=3).any(|r| self.has_round(r) && d.works_in(r));
                if d.works_in(round) && !later {
                    self.pending[i] = Some(round);
                }
            }
        }
        if round == 1 {
            share_keys(&mut self.drivers)?;
        }
        // round 1 is finalised first by the drivers without exact keys, while the keys wait
        // on disk, then by the duplicate detectors last first, so that a detector that borrows
        // the keys copies them from their owner (an earlier driver) just before its own groups
        // are built: one copy beside the owner's at a time
        let keyed = |d: &Driver| d.key_normalization().is_some();
        let order: Vec<usize> = if round == 1 {
            let (k, other): (Vec<usize>, Vec<usize>) = (0..self.drivers.len())
                .rev()
                .partition(|&i| keyed(&self.drivers[i].1));
            other.into_iter().chain(k).collect()
        } else {
            (0..self.drivers.len()).collect()
        };
        let others_now = (0..self.drivers.len())
            .any(|i| !keyed(&self.drivers[i].1) && self.pending[i].is_none());
        let mut spilled = if round == 1 && others_now {
            Some(spill_keys(&mut self.drivers)?)
        } else {
            None
        };
        for i in order {
            if self.pending[i].is_some() {
                continue;
            }
            if round == 1 {
                if keyed(&self.drivers[i].1) {
                    if let Some(s) = spilled.take() {
                        unspill_keys(&mut self.drivers, s)?;
                    }
                }
                lend_keys(&mut self.drivers, i)?;
            }
            self.finish_one(i, round)?;
        }
        Ok(())
    }

    /// Every detector's partial of round `round`, merged and serialised: per detector a
    /// little-endian u64 byte count, then [`Driver::export`]'s bytes. With `keep`, the
    /// partials stay (to be finalised here); without, they are taken (a partition's engine,
    /// ready for its next partition).
    pub(super) fn export(&mut self, round: usize, keep: bool) -> Result<Vec<u8>, ScanError> {
        let mut out = Vec::new();
        for (code, d, _) in &mut self.drivers {
            let b = d.export(code, round, keep)?;
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    /// Merge partials of round `round` written by [`Engine::export`] (of an engine with the
    /// same plan) into this engine's.
    pub(super) fn absorb(&mut self, round: usize, bytes: &[u8]) -> Result<(), ScanError> {
        let mut rest = bytes;
        for (code, d, _) in &mut self.drivers {
            let bad = || {
                ScanError::Detect(DetectError::Data {
                    code,
                    problem: format!("its partial state of round {round} is truncated"),
                })
            };
            let (len, r) = rest.split_at_checked(8).ok_or_else(bad)?;
            let len = u64::from_le_bytes(len.try_into().map_err(|_| bad())?);
            let len = usize::try_from(len).map_err(|_| bad())?;
            let (b, r) = r.split_at_checked(len).ok_or_else(bad)?;
            d.absorb(code, round, b)?;
            rest = r;
        }
        if !rest.is_empty() {
            return Err(ScanError::Config(format!(
                "a partial state of round {round} has {} bytes past its detectors' states",
                rest.len()
            )));
        }
        Ok(())
    }

    /// Seconds each detector has spent so far, in plan order.
    pub(super) fn seconds(&self) -> Vec<f64> {
        self.drivers.iter().map(|(_, _, s)| *s).collect()
    }

    /// The fitted detectors, once every round is finalised.
    pub(super) fn fitted(&self) -> Result<Vec<&dyn Fitted>, ScanError> {
        self.fitted
            .iter()
            .zip(&self.drivers)
            .map(|(f, (code, _, _))| {
                f.as_deref().ok_or_else(|| {
                    ScanError::Detect(DetectError::Data {
                        code,
                        problem: "its rounds did not finish".into(),
                    })
                })
            })
            .collect()
    }
}
