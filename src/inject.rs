//! Reproducible poison injection: write a copy of a dataset with a known fraction of rows
//! poisoned by a named attack, plus a ground-truth column saying exactly which rows.
//!
//! Used by `poisongate inject` and by the evaluation grid ([`crate::eval`]). The output has the
//! input's format (JSONL in, JSONL out; Parquet in, Parquet out) and keeps every other field of
//! every row. Everything random is drawn from the project's seeded SplitMix64
//! ([`poisongate_detectors::rng`]), so a seed gives byte-identical files on every machine.
//!
//! # Attacks
//!
//! | attack | what it does to a poisoned row | paper |
//! | --- | --- | --- |
//! | `badnets` | inserts `triggers_per_row` rare words (default one of `cf`, `mn`, `bb`, `tq`) at random word positions, sets the label to the target | Gu, Dolan-Gavitt, Garg, *BadNets*, 2017; rare-word text triggers: Kurita, Michel, Neubig, *Weight Poisoning Attacks on Pre-trained Models*, ACL 2020 |
//! | `addsent` | inserts one fixed phrase (default `I watch this 3D movie`) at a random word position, sets the label to the target | Dai, Chen, Li, *A Backdoor Attack Against LSTM-Based Text Classification Systems*, IEEE Access 2019 |
//! | `label-flip` | changes the label only (to the target, or without one to a uniformly drawn other class) | Xiao, Xiao, Eckert, *Adversarial Label Flips Attack on Support Vector Machines*, ECAI 2012 |
//! | `clean-label` | inserts triggers like `badnets` into rows that already have the target label; labels unchanged | Turner, Tsipras, Madry, *Label-Consistent Backdoor Attacks*, 2019; for text: Chen et al., *Kallima*, ESORICS 2022 |
//! | `duplicate-flip` | adds copies of rows whose label is flipped (to the target, or to another class); the originals stay, unpoisoned | no single paper: conflicting-label duplicates, the label-noise case of Xiao et al. 2012 delivered as near-verbatim copies |
//!
//! Which rows can be poisoned: `badnets`, `addsent` and (with a target) `label-flip` and
//! `duplicate-flip` draw from rows whose label differs from the target (dirty-label: the row is
//! relabelled to the target); `clean-label` draws from rows that have the target label.
//!
//! # What an attacker varies
//!
//! Options of [`InjectOptions`] beside the attack's own parameters:
//!
//! - [`Position`] (`--position start|end|anywhere`, default `anywhere`): where `badnets`,
//!   `clean-label` and `addsent` insert a trigger word or phrase: before the first word, after
//!   the last word, or at a uniformly drawn word position. With several triggers a row, each
//!   goes there in turn (`start`: the row begins with them).
//! - `edits` (`--edits K`, `duplicate-flip` only, default 0 = verbatim copies): each flipped
//!   copy has `K` words, at distinct uniformly drawn positions, replaced by words drawn
//!   uniformly from the input's vocabulary (its distinct whitespace tokens, sorted), each
//!   different from the word it replaces. Only rows with at least `5 · K` words are eligible
//!   as sources, so at most a fifth of a copy's words change; the sidecar records the bound.
//! - `random_target` (`--target-label random`): the target label is drawn from the seed among
//!   the labels present in the data (sorted as `scan` sorts them) by a SplitMix64 of its own
//!   (seeded with `seed ^` [`TARGET_SALT`]), so every other draw is the same as with that
//!   target given explicitly. The sidecar records the drawn label and the labels drawn from.
//!
//! Trigger words are any non-empty tokens without whitespace, such as rare words (`cf`),
//! ordinary-looking words (`admittedly`) or hashtags (`#blessed`); each is inserted as one
//! whitespace-separated token. Without these options every output is byte-identical to what
//! the attack wrote before they existed.
//!
//! # Rate
//!
//! `rate` is the fraction of **output** rows that are poisoned. For the in-place attacks the
//! output has the input's `n` rows and exactly `round(rate · n)` of them are poisoned. For
//! `duplicate-flip` the `k` poisoned rows are added, so `k = round(rate · n / (1 − rate))` and
//! `k / (n + k)` is the rate up to rounding. The poisoned rows are a uniform draw without
//! replacement from the eligible rows; asking for more than there are is an error.
//!
//! # Ground truth and row layout
//!
//! Every output row gains the ground-truth column (default `poison`, a boolean): `true` exactly
//! for the rows this call poisoned. An input that already has the column is refused unless
//! [`GroundTruthPolicy::Replace`] (the column then holds only this injection) or
//! [`GroundTruthPolicy::Merge`] (existing `true` rows stay `true`) is asked for.
//!
//! JSONL: an untouched row is its original line with `, "poison": false` inserted before the
//! closing brace (every existing byte kept); a poisoned row is its original line with only the
//! text and/or label value replaced (text re-encoded by serde_json, label written in the
//! input's label kind) and `"poison": true` added. `duplicate-flip` copies are inserted at
//! uniformly drawn positions; with an id column given, a copy's string id gets the suffix
//! `~dupflip<k>` so ids stay unique.
//!
//! Parquet: the whole table is read into memory, the text, label and ground-truth columns are
//! rebuilt (label values are taken from an existing row with that label, so the column's type
//! is kept), every other column is carried over by row index, and the result is written with
//! zstd compression. Dictionary-encoded text columns are refused.
//!
//! A sidecar `<out>.inject.json` records the attack, its parameters, the seed, the rate
//! definition and the SHA-256 of the input and the output, so the file can be re-made and
//! checked.

use crate::ingest::{self, ColumnSpec, Format, IngestError, LabelKind, Table};
use arrow_array::{
    Array, ArrayRef, BooleanArray, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use poisongate_detectors::rng::SplitMix64;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The trigger words of `badnets` and `clean-label` unless others are given.
pub const DEFAULT_TRIGGERS: &[&str] = &["cf", "mn", "bb", "tq"];
/// The phrase of `addsent` unless another is given.
pub const DEFAULT_PHRASE: &str = "I watch this 3D movie";
/// Default name of the ground-truth column.
pub const DEFAULT_GROUND_TRUTH: &str = "poison";
/// Suffix of the sidecar written beside the output (`<out>.inject.json`).
pub const SIDECAR_SUFFIX: &str = ".inject.json";
/// `--target-label` value asking for a target drawn from the seed.
pub const RANDOM_TARGET: &str = "random";
/// XORed into the seed for the random-target draw, so the attack's own draws are unchanged.
pub const TARGET_SALT: u64 = 0x7461_7267_6574_0000; // "target"
/// With `edits = K`, only rows with at least `EDIT_WORDS_PER_EDIT · K` words are sources.
pub const EDIT_WORDS_PER_EDIT: usize = 5;

/// Where `badnets`, `clean-label` and `addsent` insert their trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Position {
    /// Before a uniformly drawn word position `p` in `0..=w` (`p = w`: after the last word).
    #[default]
    Anywhere,
    /// Before the first word.
    Start,
    /// After the last word.
    End,
}

impl Position {
    /// Parse `start`, `end` or `anywhere`.
    pub fn parse(s: &str) -> Result<Position, InjectError> {
        match s {
            "anywhere" => Ok(Position::Anywhere),
            "start" => Ok(Position::Start),
            "end" => Ok(Position::End),
            other => Err(InjectError::Config(format!(
                "position must be start, end or anywhere, not `{other}`"
            ))),
        }
    }

    /// The name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Position::Anywhere => "anywhere",
            Position::Start => "start",
            Position::End => "end",
        }
    }

    fn is_anywhere(&self) -> bool {
        *self == Position::Anywhere
    }
}

/// An attack and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "attack", rename_all = "kebab-case")]
pub enum Attack {
    /// Rare-word triggers at random positions, label set to the target. Where they go:
    /// [`InjectOptions::position`]; any whitespace-free tokens work as triggers (rare words,
    /// ordinary words, hashtags); the target may be drawn ([`InjectOptions::random_target`]).
    Badnets {
        /// The trigger words; each inserted word is drawn uniformly from them.
        triggers: Vec<String>,
        /// Trigger words inserted per poisoned row.
        triggers_per_row: usize,
    },
    /// A fixed phrase at a random position, label set to the target. Where it goes:
    /// [`InjectOptions::position`]; the target may be drawn ([`InjectOptions::random_target`]).
    Addsent {
        /// The phrase.
        phrase: String,
    },
    /// Labels changed, text untouched. The target may be drawn
    /// ([`InjectOptions::random_target`]); `position` and `edits` do not apply.
    LabelFlip,
    /// Triggers inserted into target-label rows, labels unchanged. Where they go:
    /// [`InjectOptions::position`]; the target may be drawn ([`InjectOptions::random_target`]).
    CleanLabel {
        /// The trigger words; each inserted word is drawn uniformly from them.
        triggers: Vec<String>,
        /// Trigger words inserted per poisoned row.
        triggers_per_row: usize,
    },
    /// Copies of rows with flipped labels, added to the data; with
    /// [`InjectOptions::edits`] `K > 0` each copy has `K` words replaced (near duplicates).
    /// The target may be drawn ([`InjectOptions::random_target`]).
    DuplicateFlip,
}

impl Attack {
    /// The attack's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Attack::Badnets { .. } => "badnets",
            Attack::Addsent { .. } => "addsent",
            Attack::LabelFlip => "label-flip",
            Attack::CleanLabel { .. } => "clean-label",
            Attack::DuplicateFlip => "duplicate-flip",
        }
    }

    /// Every attack name, for messages.
    pub const NAMES: &'static [&'static str] = &[
        "badnets",
        "addsent",
        "label-flip",
        "clean-label",
        "duplicate-flip",
    ];

    /// Build an attack from its name and optional parameters (defaults where `None`).
    /// Parameters an attack does not take are an error.
    pub fn from_parts(
        name: &str,
        triggers: Option<Vec<String>>,
        triggers_per_row: Option<usize>,
        phrase: Option<String>,
    ) -> Result<Attack, InjectError> {
        let takes_triggers = matches!(name, "badnets" | "clean-label");
        let bad =
            |p: &str| InjectError::Config(format!("attack `{name}` takes no parameter `{p}`"));
        if !takes_triggers && triggers.is_some() {
            return Err(bad("triggers"));
        }
        if !takes_triggers && triggers_per_row.is_some() {
            return Err(bad("triggers_per_row"));
        }
        if name != "addsent" && phrase.is_some() {
            return Err(bad("phrase"));
        }
        let triggers =
            triggers.unwrap_or_else(|| DEFAULT_TRIGGERS.iter().map(|s| s.to_string()).collect());
        let triggers_per_row = triggers_per_row.unwrap_or(1);
        let attack = match name {
            "badnets" => Attack::Badnets {
                triggers,
                triggers_per_row,
            },
            "clean-label" => Attack::CleanLabel {
                triggers,
                triggers_per_row,
            },
            "addsent" => Attack::Addsent {
                phrase: phrase.unwrap_or_else(|| DEFAULT_PHRASE.to_string()),
            },
            "label-flip" => Attack::LabelFlip,
            "duplicate-flip" => Attack::DuplicateFlip,
            other => {
                return Err(InjectError::Config(format!(
                    "unknown attack `{other}`; attacks: {}",
                    Attack::NAMES.join(", ")
                )))
            }
        };
        attack.check()?;
        Ok(attack)
    }

    fn check(&self) -> Result<(), InjectError> {
        match self {
            Attack::Badnets {
                triggers,
                triggers_per_row,
            }
            | Attack::CleanLabel {
                triggers,
                triggers_per_row,
            } => {
                if triggers.is_empty() {
                    return Err(InjectError::Config("no trigger words given".into()));
                }
                for t in triggers {
                    if t.is_empty() || t.chars().any(char::is_whitespace) {
                        return Err(InjectError::Config(format!(
                            "trigger `{t}` must be one non-empty word without whitespace"
                        )));
                    }
                }
                if *triggers_per_row == 0 {
                    return Err(InjectError::Config(
                        "triggers_per_row must be at least 1".into(),
                    ));
                }
            }
            Attack::Addsent { phrase } => {
                if phrase.trim().is_empty() {
                    return Err(InjectError::Config("the addsent phrase is empty".into()));
                }
                if phrase.trim() != phrase {
                    return Err(InjectError::Config(
                        "the addsent phrase must not start or end with whitespace".into(),
                    ));
                }
            }
            Attack::LabelFlip | Attack::DuplicateFlip => {}
        }
        Ok(())
    }

    /// Whether the attack needs a target label.
    pub fn needs_target(&self) -> bool {
        !matches!(self, Attack::LabelFlip | Attack::DuplicateFlip)
    }

    /// Whether the attack changes the text of a poisoned row (embeddings of the original rows
    /// then no longer describe it).
    pub fn changes_text(&self) -> bool {
        matches!(
            self,
            Attack::Badnets { .. } | Attack::Addsent { .. } | Attack::CleanLabel { .. }
        )
    }
}

/// What to do when the input already has the ground-truth column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GroundTruthPolicy {
    /// Refuse (the default).
    #[default]
    Error,
    /// Overwrite it with this injection's ground truth.
    Replace,
    /// Rows already `true` stay `true`; this injection's rows become `true`.
    Merge,
}

/// Everything an injection needs.
#[derive(Debug, Clone)]
pub struct InjectOptions {
    /// Input dataset (JSONL or Parquet).
    pub data: PathBuf,
    /// Output file; its extension must name the input's format.
    pub out: PathBuf,
    /// The attack.
    pub attack: Attack,
    /// Fraction of output rows poisoned (see the [module docs](self)).
    pub rate: f64,
    /// Target label (as `scan` renders labels: integers in decimal, strings as they are).
    pub target_label: Option<String>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Text column name.
    pub text_column: String,
    /// Label column name.
    pub label_column: String,
    /// Optional id column; `duplicate-flip` copies then get unique string ids.
    pub id_column: Option<String>,
    /// Name of the ground-truth column added.
    pub ground_truth_column: String,
    /// What to do when that column exists already.
    pub ground_truth_policy: GroundTruthPolicy,
    /// Where triggers are inserted (`badnets`, `clean-label`, `addsent`; default anywhere).
    pub position: Position,
    /// Words replaced in each `duplicate-flip` copy (default 0: verbatim copies).
    pub edits: usize,
    /// Draw the target label from the seed among the data's labels (`target_label` must then
    /// be `None`).
    pub random_target: bool,
}

impl InjectOptions {
    /// Defaults for injecting `attack` into `data`, written to `out`.
    pub fn new(
        data: impl Into<PathBuf>,
        out: impl Into<PathBuf>,
        attack: Attack,
        rate: f64,
    ) -> InjectOptions {
        InjectOptions {
            data: data.into(),
            out: out.into(),
            attack,
            rate,
            target_label: None,
            seed: 0,
            text_column: "text".into(),
            label_column: "label".into(),
            id_column: None,
            ground_truth_column: DEFAULT_GROUND_TRUTH.into(),
            ground_truth_policy: GroundTruthPolicy::Error,
            position: Position::Anywhere,
            edits: 0,
            random_target: false,
        }
    }

    /// Whether poisoned rows' text differs from their source rows' (so embeddings of the
    /// original rows no longer describe them): the text attacks, and `duplicate-flip` with
    /// edits.
    pub fn changes_text(&self) -> bool {
        self.attack.changes_text() || self.edits > 0
    }

    /// The options that do not depend on the data: position and edits fit the attack, and a
    /// drawn target excludes a given one.
    pub fn check(&self) -> Result<(), InjectError> {
        self.attack.check()?;
        let name = self.attack.name();
        if !self.position.is_anywhere() && !self.attack.changes_text() {
            return Err(InjectError::Config(format!(
                "attack `{name}` inserts nothing, so it takes no position (badnets, \
                 clean-label and addsent do)"
            )));
        }
        if self.edits > 0 && self.attack != Attack::DuplicateFlip {
            return Err(InjectError::Config(format!(
                "attack `{name}` takes no edits (only duplicate-flip does)"
            )));
        }
        if self.random_target && self.target_label.is_some() {
            return Err(InjectError::Config(
                "a random target and a given target label exclude each other".into(),
            ));
        }
        Ok(())
    }
}

/// Why an injection failed. Nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// Reading the input or writing the output failed, or the input is malformed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The options are invalid or contradict each other.
    #[error("{0}")]
    Config(String),
    /// The target label is not a label of the data.
    #[error("{}: target label `{label}` is not a label of the data (labels: {})", path.display(), available.join(", "))]
    UnknownLabel {
        /// The input.
        path: PathBuf,
        /// The label asked for.
        label: String,
        /// The labels present.
        available: Vec<String>,
    },
    /// Fewer rows can be poisoned than the rate asks for.
    #[error("{}: {attack} at rate {rate} needs {needed} eligible rows ({rule}) but only {eligible} exist", path.display())]
    TooFewRows {
        /// The input.
        path: PathBuf,
        /// The attack.
        attack: &'static str,
        /// The rate asked for.
        rate: f64,
        /// Rows needed.
        needed: usize,
        /// Rows eligible.
        eligible: usize,
        /// Which rows are eligible.
        rule: &'static str,
    },
    /// The ground-truth column exists already and no policy allows overwriting it.
    #[error("{}: the input already has a column `{column}`; pick another --ground-truth-column \
             or pass --existing-ground-truth replace|merge", path.display())]
    GroundTruthExists {
        /// The input.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// A column has a type the injection cannot rewrite.
    #[error("{}: column `{column}`: {message}", path.display())]
    Unsupported {
        /// The input.
        path: PathBuf,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A JSONL line could not be rewritten.
    #[error("{}, line {line}: {message}", path.display())]
    Json {
        /// The input.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A file's path, row count and SHA-256, as recorded in the sidecar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileRecord {
    /// The path as given.
    pub path: String,
    /// Rows.
    pub rows: usize,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

/// What an injection did; also the content of the sidecar `<out>.inject.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// Tool name and version.
    pub tool: String,
    /// The attack and its parameters.
    pub attack: Attack,
    /// The rate asked for.
    pub rate: f64,
    /// How the rate turns into the number of poisoned rows for this attack.
    pub rate_definition: String,
    /// Target label, when the attack has one (the drawn one with a random target).
    pub target_label: Option<String>,
    /// With a random target: the labels it was drawn from (sorted as `scan` sorts them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_drawn_from: Option<Vec<String>>,
    /// Where triggers were inserted (absent: anywhere).
    #[serde(skip_serializing_if = "Position::is_anywhere")]
    pub position: Position,
    /// Words replaced in each `duplicate-flip` copy (absent: 0, verbatim copies).
    #[serde(skip_serializing_if = "is_zero")]
    pub edits: usize,
    /// With edits: the fewest words a source row has (`5 · edits`), so at most a fifth of a
    /// copy's words change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_min_words: Option<usize>,
    /// Seed.
    pub seed: u64,
    /// Text column.
    pub text_column: String,
    /// Label column.
    pub label_column: String,
    /// Id column, if any.
    pub id_column: Option<String>,
    /// Ground-truth column written.
    pub ground_truth_column: String,
    /// Policy applied to an existing ground-truth column.
    pub existing_ground_truth: GroundTruthPolicy,
    /// The input.
    pub input: FileRecord,
    /// The output.
    pub output: FileRecord,
    /// Rows poisoned by this injection.
    pub poisoned: usize,
    /// Rows marked `true` in the ground-truth column (differs from `poisoned` only with
    /// [`GroundTruthPolicy::Merge`]).
    pub ground_truth_positives: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One output row: which input row it comes from and what changes.
#[derive(Debug, Clone)]
struct OutRow {
    src: usize,
    /// Replacement text.
    text: Option<String>,
    /// Replacement label (index into the sorted label values).
    label: Option<usize>,
    /// Replacement id (duplicate-flip copies).
    id_suffix: Option<usize>,
    /// Ground truth written for the row.
    truth: bool,
    /// Poisoned by this injection.
    poisoned: bool,
}

/// Insert `word` (one word or a phrase) at a uniformly drawn word position of `text`:
/// before word `p` for `p < w`, after the last word for `p = w` (`w` words, maximal runs of
/// non-whitespace). All other bytes of `text` are kept; a single space separates the insertion.
pub fn insert_at_random_word(text: &str, word: &str, rng: &mut SplitMix64) -> String {
    let starts = word_starts(text);
    let p = rng.below(starts.len() + 1);
    insert_before_word(text, word, &starts, p)
}

/// Byte offsets where the words of `text` (maximal runs of non-whitespace) start.
fn word_starts(text: &str) -> Vec<usize> {
    text.char_indices()
        .filter(|&(i, c)| {
            !c.is_whitespace()
                && (i == 0
                    || text[..i]
                        .chars()
                        .next_back()
                        .is_some_and(char::is_whitespace))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Insert `word` before word `p` of `text` (`p` ≥ the word count: after the last word).
fn insert_before_word(text: &str, word: &str, starts: &[usize], p: usize) -> String {
    if let Some(&at) = starts.get(p) {
        format!("{}{word} {}", &text[..at], &text[at..])
    } else {
        // after the last word (or into an empty text)
        let end = text.trim_end().len();
        if end == 0 {
            format!("{word}{text}")
        } else {
            format!("{} {word}{}", &text[..end], &text[end..])
        }
    }
}

/// Insert `word` (one word or a phrase) at `position`: as [`insert_at_random_word`] for
/// [`Position::Anywhere`] (one draw from `rng`), before the first word for
/// [`Position::Start`], after the last word for [`Position::End`] (no draw). All other bytes
/// of `text` are kept; a single space separates the insertion.
pub fn insert_word(text: &str, word: &str, position: Position, rng: &mut SplitMix64) -> String {
    match position {
        Position::Anywhere => insert_at_random_word(text, word, rng),
        Position::Start => insert_before_word(text, word, &word_starts(text), 0),
        Position::End => insert_before_word(text, word, &[], 0),
    }
}

/// Replace `k` words of `text` at distinct uniformly drawn positions, each by a word of
/// `vocab` (sorted, distinct) drawn uniformly among those different from it. Every other
/// byte is kept. `None` when `text` has fewer than `k` words or `vocab` fewer than two words.
pub fn replace_words(
    text: &str,
    k: usize,
    vocab: &[String],
    rng: &mut SplitMix64,
) -> Option<String> {
    let starts = word_starts(text);
    if starts.len() < k || (k > 0 && vocab.len() < 2) {
        return None;
    }
    let positions = draw(&(0..starts.len()).collect::<Vec<_>>(), k, rng);
    let mut out = String::with_capacity(text.len() + 8 * k);
    let mut at = 0;
    for p in positions {
        let start = starts[p];
        let end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |e| start + e);
        let old = &text[start..end];
        // uniformly one of the other vocabulary words
        let j = rng.below(vocab.len() - 1);
        let j = match vocab.binary_search_by(|v| v.as_str().cmp(old)) {
            Ok(own) if j >= own => j + 1,
            _ => j,
        };
        out.push_str(&text[at..start]);
        out.push_str(&vocab[j]);
        at = end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// Labels as `scan` sees them: the sorted distinct values (integers numerically).
fn label_values(labels: &[String], kind: Option<LabelKind>) -> Vec<String> {
    let mut names: Vec<String> = labels.to_vec();
    names.sort();
    names.dedup();
    if kind == Some(LabelKind::Integer) {
        names.sort_by_key(|s| s.parse::<i128>().unwrap_or(0));
    }
    names
}

/// `k` distinct items of `pool`, uniformly, in increasing order (partial Fisher–Yates).
fn draw(pool: &[usize], k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut v = pool.to_vec();
    for i in 0..k.min(v.len()) {
        let j = i + rng.below(v.len() - i);
        v.swap(i, j);
    }
    v.truncate(k);
    v.sort_unstable();
    v
}

fn round_count(x: f64) -> usize {
    // rates are in [0, 1) and n a row count, so this is a small non-negative number
    x.round().max(0.0) as usize
}

/// The rows poisoned for a rate over `n` input rows.
fn poisoned_count(attack: &Attack, rate: f64, n: usize) -> usize {
    match attack {
        Attack::DuplicateFlip => round_count(rate * n as f64 / (1.0 - rate)),
        _ => round_count(rate * n as f64),
    }
}

fn rate_definition(attack: &Attack) -> &'static str {
    match attack {
        Attack::DuplicateFlip => {
            "k = round(rate * n / (1 - rate)) flipped copies are added to the n input rows, so k / (n + k) ~ rate"
        }
        _ => "k = round(rate * n) of the n rows are poisoned in place; the output has n rows",
    }
}

/// The output rows, the sorted label values and the target's index among them.
type Plan = (Vec<OutRow>, Vec<String>, Option<usize>);

/// Build the per-row plan: the output rows, the sorted label values and the target's index.
fn plan(
    opts: &InjectOptions,
    table: &Table,
    existing_truth: Option<&[bool]>,
) -> Result<Plan, InjectError> {
    let n = table.n_rows;
    let labels = table.labels.as_deref().unwrap_or_default();
    let texts = table.texts.as_deref().unwrap_or_default();
    let values = label_values(labels, table.label_kind);
    let index: BTreeMap<&str, usize> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i))
        .collect();
    let row_label: Vec<usize> = labels
        .iter()
        .map(|l| index.get(l.as_str()).copied().unwrap_or(0))
        .collect();
    let target = match &opts.target_label {
        None if opts.random_target => {
            if values.is_empty() {
                return Err(InjectError::Config(
                    "a random target needs labels in the data".into(),
                ));
            }
            Some(SplitMix64(opts.seed ^ TARGET_SALT).below(values.len()))
        }
        Some(t) => Some(
            *index
                .get(t.as_str())
                .ok_or_else(|| InjectError::UnknownLabel {
                    path: opts.data.clone(),
                    label: t.clone(),
                    available: values.clone(),
                })?,
        ),
        None => None,
    };
    if opts.attack.needs_target() && target.is_none() {
        return Err(InjectError::Config(format!(
            "attack `{}` needs --target-label",
            opts.attack.name()
        )));
    }
    if target.is_none() && values.len() < 2 {
        return Err(InjectError::Config(
            "flipping a label needs at least two label values in the data".into(),
        ));
    }
    let (mut eligible, mut rule): (Vec<usize>, &'static str) = match (&opts.attack, target) {
        (Attack::CleanLabel { .. }, Some(t)) => (
            (0..n).filter(|&i| row_label[i] == t).collect(),
            "rows with the target label",
        ),
        (_, Some(t)) => (
            (0..n).filter(|&i| row_label[i] != t).collect(),
            "rows whose label is not the target",
        ),
        (_, None) => ((0..n).collect(), "all rows"),
    };
    let min_words = EDIT_WORDS_PER_EDIT * opts.edits;
    let vocab: Vec<String> = if opts.edits > 0 {
        let words = |i: usize| texts.get(i).map_or(0, |t| t.split_whitespace().count());
        eligible.retain(|&i| words(i) >= min_words);
        rule = if target.is_some() {
            "rows whose label is not the target, with at least 5 words per edit"
        } else {
            "rows with at least 5 words per edit"
        };
        let set: std::collections::BTreeSet<&str> =
            texts.iter().flat_map(|t| t.split_whitespace()).collect();
        if set.len() < 2 {
            return Err(InjectError::Config(
                "edits need at least two distinct words in the data".into(),
            ));
        }
        set.into_iter().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    let k = poisoned_count(&opts.attack, opts.rate, n);
    if k > eligible.len() {
        return Err(InjectError::TooFewRows {
            path: opts.data.clone(),
            attack: opts.attack.name(),
            rate: opts.rate,
            needed: k,
            eligible: eligible.len(),
            rule,
        });
    }
    let mut rng = SplitMix64(opts.seed);
    let chosen = draw(&eligible, k, &mut rng);
    let old = |i: usize| existing_truth.is_some_and(|t| t[i]);
    let mut rows: Vec<OutRow> = (0..n)
        .map(|i| OutRow {
            src: i,
            text: None,
            label: None,
            id_suffix: None,
            truth: old(i),
            poisoned: false,
        })
        .collect();
    let flipped = |i: usize, rng: &mut SplitMix64| match target {
        Some(t) => t,
        None => {
            // uniformly one of the other classes
            let j = rng.below(values.len() - 1);
            if j >= row_label[i] {
                j + 1
            } else {
                j
            }
        }
    };
    match &opts.attack {
        Attack::Badnets {
            triggers,
            triggers_per_row,
        }
        | Attack::CleanLabel {
            triggers,
            triggers_per_row,
        } => {
            let relabel = matches!(opts.attack, Attack::Badnets { .. });
            for &i in &chosen {
                let mut t = texts.get(i).cloned().unwrap_or_default();
                for _ in 0..*triggers_per_row {
                    let w = &triggers[rng.below(triggers.len())];
                    t = insert_word(&t, w, opts.position, &mut rng);
                }
                let r = &mut rows[i];
                r.text = Some(t);
                r.label = if relabel { target } else { None };
                r.truth = true;
                r.poisoned = true;
            }
        }
        Attack::Addsent { phrase } => {
            for &i in &chosen {
                let t = texts.get(i).cloned().unwrap_or_default();
                let r = &mut rows[i];
                r.text = Some(insert_word(&t, phrase, opts.position, &mut rng));
                r.label = target;
                r.truth = true;
                r.poisoned = true;
            }
        }
        Attack::LabelFlip => {
            for &i in &chosen {
                let l = flipped(i, &mut rng);
                let r = &mut rows[i];
                r.label = Some(l);
                r.truth = true;
                r.poisoned = true;
            }
        }
        Attack::DuplicateFlip => {
            // each copy goes before original row `slot` (slot n: at the end)
            let mut copies: Vec<(usize, usize, OutRow)> = Vec::with_capacity(chosen.len());
            for (c, &i) in chosen.iter().enumerate() {
                let l = flipped(i, &mut rng);
                let slot = rng.below(n + 1);
                let text = if opts.edits > 0 {
                    let t = texts.get(i).map_or("", String::as_str);
                    Some(
                        replace_words(t, opts.edits, &vocab, &mut rng).ok_or_else(|| {
                            InjectError::Config(format!(
                                "row {} has fewer than {} words to edit",
                                i + 1,
                                opts.edits
                            ))
                        })?,
                    )
                } else {
                    None
                };
                copies.push((
                    slot,
                    c,
                    OutRow {
                        src: i,
                        text,
                        label: Some(l),
                        id_suffix: Some(c),
                        truth: true,
                        poisoned: true,
                    },
                ));
            }
            copies.sort_by_key(|&(slot, c, _)| (slot, c));
            let mut out = Vec::with_capacity(n + copies.len());
            let mut it = copies.into_iter().peekable();
            for (i, r) in rows.into_iter().enumerate() {
                while let Some((_, _, c)) = it.next_if(|(slot, _, _)| *slot <= i) {
                    out.push(c);
                }
                out.push(r);
            }
            out.extend(it.map(|(_, _, c)| c));
            rows = out;
        }
    }
    Ok((rows, values, target))
}

/// An injection's manifest plus, per output row, the input row it comes from.
#[derive(Debug, Clone)]
pub struct Injected {
    /// The manifest (also in the sidecar).
    pub manifest: Manifest,
    /// Per output row, the 0-based input row it was made from (the identity except for
    /// `duplicate-flip`, whose copies point at their originals). Lets row-aligned embeddings
    /// follow the rows when the text is unchanged.
    pub sources: Vec<usize>,
}

/// Run an injection: write `opts.out` and its sidecar `<out>.inject.json` (each written to a
/// temporary file and renamed into place), and return the manifest.
pub fn inject(opts: &InjectOptions) -> Result<Manifest, InjectError> {
    inject_rows(opts).map(|i| i.manifest)
}

/// [`inject`], also returning where each output row comes from.
pub fn inject_rows(opts: &InjectOptions) -> Result<Injected, InjectError> {
    if !(0.0..1.0).contains(&opts.rate) || !opts.rate.is_finite() {
        return Err(InjectError::Config(format!(
            "--rate must be in [0, 1), got {}",
            opts.rate
        )));
    }
    opts.check()?;
    let format = Format::from_path(&opts.data)?;
    let out_format = Format::from_path(&opts.out)?;
    if format != out_format {
        return Err(InjectError::Config(format!(
            "{} is {} but {} would be {}: the output keeps the input's format",
            opts.data.display(),
            format.extension(),
            opts.out.display(),
            out_format.extension()
        )));
    }
    if same_file(&opts.data, &opts.out) {
        return Err(InjectError::Config(format!(
            "refusing to overwrite the input {}",
            opts.data.display()
        )));
    }
    let gt = &opts.ground_truth_column;
    for (what, c) in [("text", &opts.text_column), ("label", &opts.label_column)] {
        if gt == c {
            return Err(InjectError::Config(format!(
                "the ground-truth column `{gt}` cannot also be the {what} column"
            )));
        }
    }
    if opts.id_column.as_ref().is_some_and(|id| id == gt) {
        return Err(InjectError::Config(format!(
            "the ground-truth column `{gt}` cannot also be the id column"
        )));
    }
    let spec = ColumnSpec {
        text: Some(opts.text_column.clone()),
        label: Some(opts.label_column.clone()),
        id: opts.id_column.clone(),
        ..ColumnSpec::default()
    };
    let table = ingest::read_table(&opts.data, &spec)?;
    let has_gt = match format {
        Format::Jsonl => jsonl_has_key(&opts.data, gt)?,
        Format::Parquet => parquet_schema(&opts.data)?
            .fields()
            .iter()
            .any(|f| f.name() == gt),
    };
    let existing = match (has_gt, opts.ground_truth_policy) {
        (false, _) | (true, GroundTruthPolicy::Replace) => None,
        (true, GroundTruthPolicy::Error) => {
            return Err(InjectError::GroundTruthExists {
                path: opts.data.clone(),
                column: gt.clone(),
            })
        }
        (true, GroundTruthPolicy::Merge) => {
            let t = ingest::read_table(
                &opts.data,
                &ColumnSpec {
                    ground_truth: Some(gt.clone()),
                    ..ColumnSpec::default()
                },
            )?;
            check_same_input(&opts.data, &table.digest.sha256, &t.digest.sha256)?;
            t.ground_truth
        }
    };
    let (rows, values, target) = plan(opts, &table, existing.as_deref())?;

    let dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| IngestError::io(&dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".poisongate-inject-")
        .tempfile_in(&dir)
        .map_err(|e| IngestError::io(&dir, e))?;
    match format {
        Format::Jsonl => {
            let bytes = jsonl_output(opts, &table, &rows, &values)?;
            tmp.write_all(&bytes)
                .map_err(|e| IngestError::io(tmp.path(), e))?;
        }
        Format::Parquet => parquet_output(opts, &table, &rows, tmp.as_file_mut())?,
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| IngestError::io(tmp.path(), e))?;
    let out_digest = ingest::sha256_file(tmp.path())?;

    let manifest = Manifest {
        tool: format!("poisongate {}", env!("CARGO_PKG_VERSION")),
        attack: opts.attack.clone(),
        rate: opts.rate,
        rate_definition: rate_definition(&opts.attack).to_string(),
        target_label: if opts.random_target {
            target.and_then(|t| values.get(t).cloned())
        } else {
            opts.target_label.clone()
        },
        target_drawn_from: opts.random_target.then(|| values.clone()),
        position: opts.position,
        edits: opts.edits,
        edit_min_words: (opts.edits > 0).then_some(EDIT_WORDS_PER_EDIT * opts.edits),
        seed: opts.seed,
        text_column: opts.text_column.clone(),
        label_column: opts.label_column.clone(),
        id_column: opts.id_column.clone(),
        ground_truth_column: gt.clone(),
        existing_ground_truth: opts.ground_truth_policy,
        input: FileRecord {
            path: opts.data.display().to_string(),
            rows: table.n_rows,
            sha256: table.digest.sha256.clone(),
        },
        output: FileRecord {
            path: opts.out.display().to_string(),
            rows: rows.len(),
            sha256: out_digest.sha256,
        },
        poisoned: rows.iter().filter(|r| r.poisoned).count(),
        ground_truth_positives: rows.iter().filter(|r| r.truth).count(),
    };
    let sidecar = sidecar_path(&opts.out);
    let mut text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| InjectError::Config(format!("cannot serialise the manifest: {e}")))?;
    text.push('\n');
    let mut side_tmp = tempfile::Builder::new()
        .prefix(".poisongate-inject-")
        .tempfile_in(&dir)
        .map_err(|e| IngestError::io(&dir, e))?;
    side_tmp
        .write_all(text.as_bytes())
        .map_err(|e| IngestError::io(side_tmp.path(), e))?;
    tmp.persist(&opts.out)
        .map_err(|e| IngestError::io(&opts.out, e.error))?;
    side_tmp
        .persist(&sidecar)
        .map_err(|e| IngestError::io(&sidecar, e.error))?;
    Ok(Injected {
        manifest,
        sources: rows.iter().map(|r| r.src).collect(),
    })
}

/// `<out>.inject.json`.
pub fn sidecar_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(SIDECAR_SUFFIX);
    PathBuf::from(s)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn check_same_input(path: &Path, first: &str, now: &str) -> Result<(), InjectError> {
    if first == now {
        Ok(())
    } else {
        Err(IngestError::InputChanged {
            path: path.to_path_buf(),
            expected: first.to_string(),
            actual: now.to_string(),
        }
        .into())
    }
}

// ---------------------------------------------------------------------------------------------
// JSONL

/// A top-level member of a JSON object line: its key and the byte range of its value.
struct Member {
    key: String,
    value: std::ops::Range<usize>,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// End (exclusive) of the JSON string starting at `b[i] == b'"'`.
fn string_end(b: &[u8], i: usize) -> Result<usize, String> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err("unterminated string".into())
}

/// End (exclusive) of the JSON value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Result<usize, String> {
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(b'{') | Some(b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err("unterminated array or object".into())
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            if j == i {
                Err("missing value".into())
            } else {
                Ok(j)
            }
        }
        None => Err("missing value".into()),
    }
}

/// The top-level members of an object line and the position of its closing brace.
fn members(line: &[u8]) -> Result<(Vec<Member>, usize, usize), String> {
    let open = skip_ws(line, 0);
    if line.get(open) != Some(&b'{') {
        return Err("line is not a JSON object".into());
    }
    let mut out = Vec::new();
    let mut i = skip_ws(line, open + 1);
    if line.get(i) == Some(&b'}') {
        return Ok((out, open, i));
    }
    loop {
        if line.get(i) != Some(&b'"') {
            return Err("expected a key".into());
        }
        let kend = string_end(line, i)?;
        let key: String = serde_json::from_slice(&line[i..kend]).map_err(|e| e.to_string())?;
        i = skip_ws(line, kend);
        if line.get(i) != Some(&b':') {
            return Err("expected `:`".into());
        }
        let vstart = skip_ws(line, i + 1);
        let vend = value_end(line, vstart)?;
        if out.iter().any(|m: &Member| m.key == key) {
            return Err(format!("key `{key}` appears twice"));
        }
        out.push(Member {
            key,
            value: vstart..vend,
        });
        i = skip_ws(line, vend);
        match line.get(i) {
            Some(b',') => i = skip_ws(line, i + 1),
            Some(b'}') => return Ok((out, open, i)),
            _ => return Err("expected `,` or `}`".into()),
        }
    }
}

/// Non-blank lines with their 1-based line numbers.
type Lines = Vec<(usize, Vec<u8>)>;

fn read_lines(path: &Path) -> Result<(Lines, String), IngestError> {
    let mut lines = ingest::JsonlLines::open(path)?;
    let mut out = Vec::new();
    while let Some(no) = lines.advance()? {
        out.push((no, lines.bytes().to_vec()));
    }
    let digest = lines.finish()?;
    Ok((out, digest.sha256))
}

fn jsonl_has_key(path: &Path, key: &str) -> Result<bool, InjectError> {
    let (lines, _) = read_lines(path)?;
    for (no, line) in &lines {
        let (m, _, _) = members(line).map_err(|message| InjectError::Json {
            path: path.to_path_buf(),
            line: *no,
            message,
        })?;
        if m.iter().any(|m| m.key == key) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A label value as JSON, in the input's label kind.
fn label_json(value: &str, kind: Option<LabelKind>) -> String {
    match kind {
        Some(LabelKind::Integer) | Some(LabelKind::Bool) => value.to_string(),
        _ => serde_json::Value::String(value.to_string()).to_string(),
    }
}

fn jsonl_output(
    opts: &InjectOptions,
    table: &Table,
    rows: &[OutRow],
    values: &[String],
) -> Result<Vec<u8>, InjectError> {
    let (lines, sha) = read_lines(&opts.data)?;
    check_same_input(&opts.data, &table.digest.sha256, &sha)?;
    if lines.len() != table.n_rows {
        return Err(InjectError::Config(format!(
            "{}: {} lines re-read but {} rows read before",
            opts.data.display(),
            lines.len(),
            table.n_rows
        )));
    }
    let gt = &opts.ground_truth_column;
    let mut out = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 20).sum());
    for r in rows {
        let (no, line) = &lines[r.src];
        let err = |message: String| InjectError::Json {
            path: opts.data.clone(),
            line: *no,
            message,
        };
        let (ms, open, close) = members(line).map_err(err)?;
        let span = |key: &str| ms.iter().find(|m| m.key == key).map(|m| m.value.clone());
        // (range, replacement), applied in order of position
        let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
        if let Some(t) = &r.text {
            let s = span(&opts.text_column)
                .ok_or_else(|| err(format!("no `{}` key", opts.text_column)))?;
            edits.push((s, serde_json::Value::String(t.clone()).to_string()));
        }
        if let Some(l) = r.label {
            let s = span(&opts.label_column)
                .ok_or_else(|| err(format!("no `{}` key", opts.label_column)))?;
            edits.push((s, label_json(&values[l], table.label_kind)));
        }
        if let (Some(c), Some(id_col)) = (r.id_suffix, &opts.id_column) {
            let s = span(id_col).ok_or_else(|| err(format!("no `{id_col}` key")))?;
            let old: serde_json::Value =
                serde_json::from_slice(&line[s.clone()]).map_err(|e| err(e.to_string()))?;
            let serde_json::Value::String(id) = old else {
                return Err(err(format!(
                    "id `{old}` is not a string; duplicate-flip can only make string ids unique \
                     (omit --id-column to copy ids verbatim)"
                )));
            };
            edits.push((
                s,
                serde_json::Value::String(format!("{id}~dupflip{c}")).to_string(),
            ));
        }
        let truth = if r.truth { "true" } else { "false" };
        let gt_span = span(gt);
        if let Some(s) = gt_span.clone() {
            edits.push((s, truth.to_string()));
        }
        edits.sort_by_key(|(s, _)| s.start);
        let mut line_out = Vec::with_capacity(line.len() + 32);
        let mut at = 0;
        for (s, rep) in &edits {
            line_out.extend_from_slice(&line[at..s.start]);
            line_out.extend_from_slice(rep.as_bytes());
            at = s.end;
        }
        if gt_span.is_none() {
            // insert before the closing brace, after the last non-whitespace byte
            let inner_end = line[..close]
                .iter()
                .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .map_or(close, |p| p + 1);
            line_out.extend_from_slice(&line[at..inner_end]);
            let key = serde_json::Value::String(gt.clone()).to_string();
            if inner_end > open + 1 {
                line_out.extend_from_slice(b", ");
            }
            line_out.extend_from_slice(format!("{key}: {truth}").as_bytes());
            at = close;
        }
        line_out.extend_from_slice(&line[at..]);
        if !line_out.ends_with(b"\n") {
            line_out.push(b'\n');
        }
        out.extend_from_slice(&line_out);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parquet

/// The output column: row i is the next value of `repl` (in order) where `replaced(rows[i])`,
/// else the source row's value of `col`.
fn splice(
    col: &ArrayRef,
    repl: &ArrayRef,
    rows: &[OutRow],
    replaced: impl Fn(&OutRow) -> bool,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let mut k = 0usize;
    let idx: Vec<(usize, usize)> = rows
        .iter()
        .map(|r| {
            if replaced(r) {
                k += 1;
                (1, k - 1)
            } else {
                (0, r.src)
            }
        })
        .collect();
    arrow_select::interleave::interleave(&[col.as_ref(), repl.as_ref()], &idx)
}

fn parquet_schema(path: &Path) -> Result<Arc<Schema>, IngestError> {
    let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| IngestError::parquet(path, e))?;
    Ok(builder.schema().clone())
}

fn parquet_output(
    opts: &InjectOptions,
    table: &Table,
    rows: &[OutRow],
    out: &mut std::fs::File,
) -> Result<(), InjectError> {
    let path = &opts.data;
    let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    let before = ingest::hash_open_file(&file, path)?;
    check_same_input(path, &table.digest.sha256, &before.sha256)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| IngestError::parquet(path, e))?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| IngestError::parquet(path, e))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| IngestError::arrow(path, e))?;
    let all = arrow_select::concat::concat_batches(&schema, &batches)
        .map_err(|e| IngestError::arrow(path, e))?;
    if all.num_rows() != table.n_rows {
        return Err(InjectError::Config(format!(
            "{}: {} rows re-read but {} read before",
            path.display(),
            all.num_rows(),
            table.n_rows
        )));
    }
    // a donor row for each label value, so new labels keep the column's type
    let labels = table.labels.as_deref().unwrap_or_default();
    let values = label_values(labels, table.label_kind);
    let donor: Vec<usize> = values
        .iter()
        .map(|v| labels.iter().position(|l| l == v).unwrap_or(0))
        .collect();
    let unsupported = |column: &str, message: String| InjectError::Unsupported {
        path: path.clone(),
        column: column.to_string(),
        message,
    };
    let arrow = |e| InjectError::from(IngestError::arrow(path, e));

    let mut fields: Vec<Arc<Field>> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let gt = &opts.ground_truth_column;
    for (f, col) in schema.fields().iter().zip(all.columns()) {
        if f.name() == gt {
            continue; // rewritten below
        }
        let name = f.name().as_str();
        let new: ArrayRef = if name == opts.text_column {
            let texts: Vec<&str> = rows.iter().filter_map(|r| r.text.as_deref()).collect();
            let repl: ArrayRef = match col.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from(texts)),
                DataType::LargeUtf8 => Arc::new(LargeStringArray::from(texts)),
                DataType::Utf8View => Arc::new(StringViewArray::from(texts)),
                other => {
                    return Err(unsupported(
                        name,
                        format!(
                            "text of type {other} cannot be rewritten; use a plain string column"
                        ),
                    ))
                }
            };
            splice(col, &repl, rows, |r| r.text.is_some()).map_err(arrow)?
        } else if name == opts.label_column {
            let idx: Vec<(usize, usize)> = rows
                .iter()
                .map(|r| (0, r.label.map_or(r.src, |l| donor[l])))
                .collect();
            arrow_select::interleave::interleave(&[col.as_ref()], &idx).map_err(arrow)?
        } else if opts.id_column.as_deref() == Some(name)
            && rows.iter().any(|r| r.id_suffix.is_some())
        {
            let ids: Vec<String> = rows
                .iter()
                .filter_map(|r| {
                    r.id_suffix.map(|c| {
                        table
                            .ids
                            .as_ref()
                            .and_then(|ids| ids.get(r.src))
                            .map_or(String::new(), |id| format!("{id}~dupflip{c}"))
                    })
                })
                .collect();
            let repl: ArrayRef = match col.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from(ids)),
                DataType::LargeUtf8 => Arc::new(LargeStringArray::from(ids)),
                other => {
                    return Err(unsupported(
                        name,
                        format!(
                            "id of type {other}: duplicate-flip can only make string ids unique \
                             (omit --id-column to copy ids verbatim)"
                        ),
                    ))
                }
            };
            splice(col, &repl, rows, |r| r.id_suffix.is_some()).map_err(arrow)?
        } else {
            let idx: Vec<(usize, usize)> = rows.iter().map(|r| (0, r.src)).collect();
            arrow_select::interleave::interleave(&[col.as_ref()], &idx).map_err(arrow)?
        };
        fields.push(f.clone());
        columns.push(new);
    }
    let truth: BooleanArray = rows.iter().map(|r| Some(r.truth)).collect();
    fields.push(Arc::new(Field::new(gt, DataType::Boolean, false)));
    columns.push(Arc::new(truth));
    let out_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batch = RecordBatch::try_new(out_schema.clone(), columns).map_err(arrow)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let pq = |e| InjectError::from(IngestError::parquet(&opts.out, e));
    let mut w = ArrowWriter::try_new(out, out_schema, Some(props)).map_err(pq)?;
    for start in (0..batch.num_rows()).step_by(ingest::PARQUET_BATCH_SIZE) {
        let len = ingest::PARQUET_BATCH_SIZE.min(batch.num_rows() - start);
        w.write(&batch.slice(start, len)).map_err(pq)?;
    }
    w.close().map_err(pq)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insertion_keeps_every_other_byte() {
        let mut rng = SplitMix64(3);
        for _ in 0..200 {
            let t = "  a  good\tfilm . ";
            let out = insert_at_random_word(t, "cf", &mut rng);
            let words: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(words.iter().filter(|w| **w == "cf").count(), 1);
            let rest: Vec<&str> = words.into_iter().filter(|w| *w != "cf").collect();
            assert_eq!(rest, vec!["a", "good", "film", "."]);
            // removing the inserted word and one adjacent space gives the original back
            let back = out.replacen("cf ", "", 1);
            let back2 = out.replacen(" cf", "", 1);
            assert!(back == t || back2 == t, "{out:?}");
        }
        assert_eq!(insert_at_random_word("", "cf", &mut rng), "cf");
    }

    #[test]
    fn start_and_end_keep_every_other_byte() {
        let mut rng = SplitMix64(1);
        let t = "  a  good\tfilm . ";
        assert_eq!(
            insert_word(t, "#blessed", Position::Start, &mut rng),
            "  #blessed a  good\tfilm . "
        );
        assert_eq!(
            insert_word(t, "#blessed", Position::End, &mut rng),
            "  a  good\tfilm . #blessed "
        );
        assert_eq!(insert_word("", "cf", Position::Start, &mut rng), "cf");
        assert_eq!(insert_word("", "cf", Position::End, &mut rng), "cf");
    }

    #[test]
    fn replacement_changes_exactly_k_words() {
        let vocab: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut rng = SplitMix64(7);
        for k in 0..=3 {
            for _ in 0..100 {
                let t = " a\tb  c a ";
                let out = replace_words(t, k, &vocab, &mut rng).unwrap();
                let (x, y): (Vec<&str>, Vec<&str>) = (
                    t.split_whitespace().collect(),
                    out.split_whitespace().collect(),
                );
                assert_eq!(x.len(), y.len());
                assert_eq!(x.iter().zip(&y).filter(|(p, q)| p != q).count(), k);
                // whitespace untouched
                let ws = |s: &str| s.chars().filter(|c| c.is_whitespace()).collect::<String>();
                assert_eq!(ws(t), ws(&out));
            }
        }
        assert!(replace_words("a b", 3, &vocab, &mut rng).is_none());
        assert!(replace_words("a b", 1, &vocab[..1], &mut rng).is_none());
    }

    #[test]
    fn member_spans() {
        let line = br#" {"a": "x\"}", "b" : [1, {"c": 2}], "d":3 }"#;
        let (m, open, close) = members(line).unwrap();
        assert_eq!(open, 1);
        assert_eq!(line[close], b'}');
        let keys: Vec<&str> = m.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "d"]);
        assert_eq!(&line[m[0].value.clone()], br#""x\"}""#);
        assert_eq!(&line[m[1].value.clone()], br#"[1, {"c": 2}]"#);
        assert_eq!(&line[m[2].value.clone()], b"3");
        assert!(members(br#"{"a": 1, "a": 2}"#).is_err());
    }

    #[test]
    fn counts_follow_the_rate_definition() {
        let bn = Attack::from_parts("badnets", None, None, None).unwrap();
        assert_eq!(poisoned_count(&bn, 0.005, 6920), 35);
        assert_eq!(poisoned_count(&Attack::DuplicateFlip, 0.1, 900), 100);
    }
}
