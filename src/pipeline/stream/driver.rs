//! One detector's rounds, batch by batch: what each round folds in and how it is finalised.

use super::*;

/// One detector's rounds and what they have gathered so far (one per planned detector, so
/// the size of the largest variant does not matter).
#[allow(clippy::large_enum_variant)]
pub(super) enum Driver {
    Spec {
        r: spec::Rounds,
        moments: MomentsPartial,
        dirs: Option<spec::Directions>,
        proj: Tree<spec::ProjectionsPartial>,
    },
    Act {
        r: act::Rounds,
        moments: MomentsPartial,
        red: Option<act::Reductions>,
        sample: Tree<act::SamplePartial>,
    },
    Exact {
        r: dup::Rounds,
        /// Round 1's keys; empty when an earlier driver with the same normalisation makes them
        /// (`borrows`), which hands them over before round 1 is finalised.
        keys: Tree<dup::KeysPartial>,
        borrows: Option<usize>,
        groups: Option<dup::Groups>,
        words: dup::WordsPartial,
    },
    Near {
        r: NearRounds,
        /// As for `Exact`.
        keys: Tree<dup::KeysPartial>,
        borrows: Option<usize>,
        groups: Option<dup::Groups>,
        /// Round 2's slices of the key space (one per `near_slice_groups` exact groups).
        slices: u64,
        /// Round 2's first slice, merged as the batches come.
        near: Tree<NearKeysPartial>,
        /// Round 2's other slices, on disk until the pass is over.
        spilled: Option<SliceFiles>,
        cands: Candidates,
        links: Option<Links>,
        payload: Tree<PayloadPartial>,
    },
    Trig {
        r: trig::Rounds,
        sample: Tree<trig::SamplePartial>,
    },
}

/// Merging exact-key partials.
pub(super) fn merge_keys(a: &mut dup::KeysPartial, b: &dup::KeysPartial) -> Result<(), ScanError> {
    a.merge(b);
    Ok(())
}

/// A detector's state error, as a detection error naming it.
pub(super) fn state_err(
    code: &'static str,
) -> impl Fn(poisongate_detectors::state::StateError) -> ScanError {
    move |e| {
        ScanError::Detect(DetectError::Data {
            code,
            problem: format!("merging its partial states failed: {e}"),
        })
    }
}

impl Driver {
    pub(super) fn new(
        code: &'static str,
        params: &toml::Table,
        n_classes: usize,
        dims: usize,
        n_rows: usize,
    ) -> Result<Driver, ScanError> {
        Ok(match code {
            "SPEC001" => {
                let r = spec::Rounds::new(&SpectralParams::from_table(params)?, n_classes, dims);
                Driver::Spec {
                    moments: r.pca().empty_moments(),
                    proj: Tree::default(),
                    dirs: None,
                    r,
                }
            }
            "ACT001" => {
                let r = act::Rounds::new(&ActivationParams::from_table(params)?, n_classes, dims);
                Driver::Act {
                    moments: r.pca().empty_moments(),
                    red: None,
                    sample: Tree::default(),
                    r,
                }
            }
            "DUP001" => {
                let r = dup::Rounds::new(&DupParams::dup001(params)?)?;
                Driver::Exact {
                    words: r.empty_words(),
                    keys: Tree::default(),
                    borrows: None,
                    groups: None,
                    r,
                }
            }
            "DUP002" | "DUP003" => {
                let p = if code == "DUP002" {
                    DupParams::dup002(params)?
                } else {
                    DupParams::dup003(params)?
                };
                Driver::Near {
                    r: NearRounds::new(&p)?,
                    keys: Tree::default(),
                    borrows: None,
                    groups: None,
                    slices: 1,
                    near: Tree::default(),
                    spilled: None,
                    cands: Candidates::default(),
                    links: None,
                    payload: Tree::default(),
                }
            }
            "TRIG001" => Driver::Trig {
                r: trig::Rounds::new(
                    &TriggerParams::from_table(params)?,
                    n_classes,
                    n_rows as u64,
                ),
                sample: Tree::default(),
            },
            other => {
                return Err(ScanError::Config(format!(
                    "--stream runs {} only: {other} has no rounds",
                    STREAMED.join(", ")
                )))
            }
        })
    }

    /// The normalisation of a duplicate detector's exact keys.
    pub(super) fn key_normalization(&self) -> Option<Normalization> {
        match self {
            Driver::Exact { r, .. } => Some(r.normalization()),
            Driver::Near { r, .. } => Some(r.normalization()),
            _ => None,
        }
    }

    /// Make round 1's keys here, or take them from driver `owner`.
    pub(super) fn set_borrows(&mut self, owner: Option<usize>) {
        if let Driver::Exact { borrows, .. } | Driver::Near { borrows, .. } = self {
            *borrows = owner;
        }
    }

    /// The header of round 1's keys, for a duplicate detector that makes its own.
    pub(super) fn owned_key_header(&self) -> Option<poisongate_detectors::state::Header> {
        match self {
            Driver::Exact {
                r, borrows: None, ..
            } => Some(r.header().clone()),
            Driver::Near {
                r, borrows: None, ..
            } => Some(r.header().clone()),
            _ => None,
        }
    }

    /// The round-1 key tree of a duplicate detector.
    pub(super) fn key_tree(&mut self) -> Option<&mut Tree<dup::KeysPartial>> {
        match self {
            Driver::Exact { keys, .. } | Driver::Near { keys, .. } => Some(keys),
            _ => None,
        }
    }

    /// Whether round `round` reads the embeddings.
    pub(super) fn reads_x(&self, round: usize) -> bool {
        matches!(self, Driver::Spec { .. } | Driver::Act { .. }) && (round == 1 || round == 2)
    }

    /// Whether round `round` (1 to 3) folds rows into this detector's state.
    pub(super) fn works_in(&self, round: usize) -> bool {
        match self {
            Driver::Trig { .. } => round == 1,
            Driver::Near { .. } => (1..=3).contains(&round),
            _ => (1..=2).contains(&round),
        }
    }

    /// Whether round 3 has work.
    pub(super) fn has_round_3(&self) -> bool {
        matches!(self, Driver::Near { .. })
    }

    /// Fold one batch into round `round`'s partial.
    pub(super) fn update(
        &mut self,
        code: &'static str,
        round: usize,
        rows: &Rows,
        counts: &[u64],
    ) -> Result<(), ScanError> {
        let err = state_err(code);
        let x = || {
            rows.x.as_ref().map(|m| m.view()).ok_or_else(|| {
                ScanError::Config(format!("{code} needs embeddings (--embeddings FILE.npy)"))
            })
        };
        match (self, round) {
            (Driver::Spec { r, moments, .. }, 1) => {
                let m = r
                    .pca()
                    .moments(counts, &x()?, &rows.labels, &rows.ids)
                    .map_err(&err)?;
                moments.merge(&m).map_err(&err)?;
            }
            (Driver::Act { r, moments, .. }, 1) => {
                let m = r
                    .pca()
                    .moments(counts, &x()?, &rows.labels, &rows.ids)
                    .map_err(&err)?;
                moments.merge(&m).map_err(&err)?;
            }
            (
                Driver::Exact {
                    r,
                    keys,
                    borrows: None,
                    ..
                },
                1,
            ) => {
                keys.push(r.keys(&rows.texts, &rows.labels, &rows.ids), &merge_keys)?;
            }
            (
                Driver::Near {
                    r,
                    keys,
                    borrows: None,
                    ..
                },
                1,
            ) => {
                keys.push(r.keys(&rows.texts, &rows.labels, &rows.ids), &merge_keys)?;
            }
            (Driver::Trig { r, sample }, 1) => {
                let s = r.sample(&rows.texts, &rows.labels, &rows.ids)?;
                sample.push(s, &|a, b| a.merge(b).map_err(&err))?;
            }
            (
                Driver::Spec {
                    r,
                    dirs: Some(d),
                    proj,
                    ..
                },
                2,
            ) => {
                let p = r.projections(d, &x()?, &rows.labels);
                proj.push(p, &|a, b| a.merge(b).map_err(&err))?;
            }
            (Driver::Act { r, red, sample, .. }, 2) => {
                if let Some(red) = red.as_ref() {
                    let s = r.sample(counts, red, &x()?, &rows.labels, &rows.ids);
                    sample.push(s, &|a, b| a.merge(b).map_err(&err))?;
                }
            }
            (
                Driver::Exact {
                    r, groups, words, ..
                },
                2,
            ) => {
                if let Some(g) = groups.as_ref().filter(|g| g.needs_words()) {
                    words.merge(&r.words(g, &rows.texts, &rows.labels));
                }
            }
            (
                Driver::Near {
                    r,
                    groups: Some(g),
                    near,
                    slices,
                    spilled,
                    ..
                },
                2,
            ) => {
                let merge: Merge<'_, NearKeysPartial> = &|a, b| {
                    a.merge(b);
                    Ok(())
                };
                match spilled.as_mut() {
                    None => {
                        near.push(r.near_keys(g, &rows.texts, &rows.ids, KeyRange::ALL), merge)?
                    }
                    Some(files) => {
                        let parts = r.near_keys_sliced(g, &rows.texts, &rows.ids, *slices);
                        for (part, k) in parts.into_iter().enumerate() {
                            if part == 0 {
                                near.push(k, merge)?;
                            } else {
                                files.append(part, &k, r.header())?;
                            }
                        }
                    }
                }
            }
            (
                Driver::Near {
                    r,
                    groups,
                    links,
                    payload,
                    ..
                },
                3,
            ) => {
                if let (Some(g), Some(l)) = (groups, links) {
                    let p = r.payload(g, l, &rows.texts, &rows.labels, &rows.ids);
                    payload.push(p, &|a, b| a.merge(b).map_err(&err))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Finalise round `round`; after the detector's last round, its fitted form.
    pub(super) fn finish_round(
        &mut self,
        code: &'static str,
        round: usize,
        names: &[String],
        counts: &[u64],
        slice_groups: u64,
    ) -> Result<Option<Box<dyn Fitted>>, ScanError> {
        let err = state_err(code);
        Ok(match (self, round) {
            (
                Driver::Spec {
                    r, moments, dirs, ..
                },
                1,
            ) => {
                *dirs = Some(r.directions(counts, moments)?);
                None
            }
            (
                Driver::Act {
                    r,
                    moments,
                    red,
                    sample,
                },
                1,
            ) => {
                *red = Some(r.reductions(counts, moments)?);
                *sample = Tree::default();
                None
            }
            (
                Driver::Exact {
                    r, keys, groups, ..
                },
                1,
            ) => {
                *groups = Some(r.groups(keys.take(Default::default(), &merge_keys)?)?);
                None
            }
            (
                Driver::Near {
                    r,
                    keys,
                    groups,
                    slices,
                    spilled,
                    ..
                },
                1,
            ) => {
                let g = r.groups(keys.take(Default::default(), &merge_keys)?)?;
                *slices = (g.count() as u64).div_ceil(slice_groups.max(1)).max(1);
                if *slices > 1 {
                    *spilled = Some(SliceFiles::new(*slices)?);
                }
                *groups = Some(g);
                None
            }
            (Driver::Trig { r, sample }, 1) => {
                let s = sample.take(Default::default(), &|a, b| a.merge(b).map_err(&err))?;
                Some(r.finish(names, s)?)
            }
            (Driver::Spec { r, dirs, proj, .. }, 2) => match dirs.take() {
                Some(d) => {
                    let p = proj.take(r.empty_projections(), &|a, b| a.merge(b).map_err(&err))?;
                    Some(r.finish(names, counts, d, &p))
                }
                None => None,
            },
            (Driver::Act { r, red, sample, .. }, 2) => match red.take() {
                Some(red) => {
                    let empty = r.empty_sample(&red);
                    let s = sample.take(empty, &|a, b| a.merge(b).map_err(&err))?;
                    Some(r.finish(names, counts, red, s)?)
                }
                None => None,
            },
            (
                Driver::Exact {
                    r, groups, words, ..
                },
                2,
            ) => groups.take().map(|g| r.finish(names, g, words)),
            (
                Driver::Near {
                    r,
                    groups,
                    slices,
                    near,
                    spilled,
                    cands,
                    links,
                    ..
                },
                2,
            ) => {
                if let Some(g) = groups.as_ref() {
                    let merge: Merge<'_, NearKeysPartial> = &|a, b| {
                        a.merge(b);
                        Ok(())
                    };
                    // one slice's keys at a time: the first from memory, the others from disk
                    for part in 0..*slices as usize {
                        if part > 0 {
                            if let Some(files) = spilled.as_mut() {
                                files.read(part, r.header(), code, &mut |k| near.push(k, merge))?;
                            }
                        }
                        let keys = near.take(Default::default(), merge)?;
                        cands.merge(&r.candidates(&keys));
                    }
                    *spilled = None;
                    *links = Some(r.links(g, std::mem::take(cands)));
                }
                None
            }
            (
                Driver::Near {
                    r,
                    groups,
                    links,
                    payload,
                    ..
                },
                3,
            ) => match (groups.take(), links.take()) {
                (Some(g), Some(l)) => {
                    let p = payload.take(Default::default(), &|a, b| a.merge(b).map_err(&err))?;
                    Some(r.finish(names, g, l, p, true)?)
                }
                _ => None,
            },
            _ => None,
        })
    }
}
