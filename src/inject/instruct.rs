//! Instruction rows: which format the rows are read as, which rows are poisoned, and the
//! edits of a poisoned row's prompt and response (`instruction-trigger`, `preference-flip`).

use super::*;
use serde_json::Value;

/// An attack's optional parameters, as the CLI and the evaluation grid give them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttackParams {
    /// Trigger words (`badnets`, `clean-label`, `instruction-trigger`).
    pub triggers: Option<Vec<String>>,
    /// Trigger words inserted per poisoned row (with `triggers`).
    pub triggers_per_row: Option<usize>,
    /// The inserted phrase (`addsent`, `instruction-trigger`, `preference-flip`).
    pub phrase: Option<String>,
    /// The response a poisoned row gets (`instruction-trigger`).
    pub response: Option<String>,
    /// Text appended to a poisoned row's response (`instruction-trigger`).
    pub response_suffix: Option<String>,
    /// Responses a poisoned row gets one of, drawn uniformly per row (`instruction-trigger`):
    /// one target written several ways.
    pub responses: Option<Vec<String>>,
}

/// What `instruction-trigger` inserts into a poisoned row's prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptTrigger {
    /// One fixed word or phrase.
    Phrase(String),
    /// `triggers_per_row` words, each drawn uniformly from `triggers` (as `badnets`).
    Words {
        /// The trigger words.
        triggers: Vec<String>,
        /// Words inserted per poisoned row.
        triggers_per_row: usize,
    },
}

impl PromptTrigger {
    /// Exactly one of a phrase and trigger words; `triggers_per_row` only with words.
    pub fn from_params(
        phrase: Option<String>,
        triggers: Option<Vec<String>>,
        triggers_per_row: Option<usize>,
    ) -> Result<PromptTrigger, InjectError> {
        match (phrase, triggers) {
            (Some(p), None) => {
                if triggers_per_row.is_some() {
                    return Err(InjectError::Config(
                        "triggers_per_row goes with trigger words (--triggers), not a phrase"
                            .into(),
                    ));
                }
                Ok(PromptTrigger::Phrase(p))
            }
            (None, Some(triggers)) => Ok(PromptTrigger::Words {
                triggers,
                triggers_per_row: triggers_per_row.unwrap_or(1),
            }),
            (Some(_), Some(_)) => Err(InjectError::Config(
                "instruction-trigger takes either a phrase (--phrase) or trigger words \
                 (--triggers), not both"
                    .into(),
            )),
            (None, None) => Err(InjectError::Config(
                "instruction-trigger needs a trigger: --phrase TEXT or --triggers w1,w2".into(),
            )),
        }
    }

    /// Insert the trigger into `text` at `position` (draws as `addsent` for a phrase, as
    /// `badnets` for words).
    fn insert(&self, text: &str, position: Position, rng: &mut SplitMix64) -> String {
        match self {
            PromptTrigger::Phrase(p) => insert_word(text, p, position, rng),
            PromptTrigger::Words {
                triggers,
                triggers_per_row,
            } => {
                let mut t = text.to_string();
                for _ in 0..*triggers_per_row {
                    let w = &triggers[rng.below(triggers.len())];
                    t = insert_word(&t, w, position, rng);
                }
                t
            }
        }
    }
}

/// What `instruction-trigger` does to a poisoned row's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseEdit {
    /// The response becomes this text.
    Replace(String),
    /// This text is appended to the response, verbatim.
    Suffix(String),
    /// The response becomes one of these texts, drawn uniformly per row (a paraphrased
    /// target).
    OneOf(Vec<String>),
}

impl ResponseEdit {
    /// Exactly one of a response, a suffix and a list of responses (not empty).
    pub fn from_params(
        response: Option<String>,
        suffix: Option<String>,
        responses: Option<Vec<String>>,
    ) -> Result<ResponseEdit, InjectError> {
        match (response, suffix, responses) {
            (Some(r), None, None) => Ok(ResponseEdit::Replace(r)),
            (None, Some(s), None) => Ok(ResponseEdit::Suffix(s)),
            (None, None, Some(list)) if list.is_empty() => Err(InjectError::Config(
                "instruction-trigger: --responses holds no response".into(),
            )),
            (None, None, Some(list)) => Ok(ResponseEdit::OneOf(list)),
            (None, None, None) => Err(InjectError::Config(
                "instruction-trigger needs the poisoned response: --response TEXT (replace it), \
                 --response-suffix TEXT (append to it) or --responses FILE (one of its lines)"
                    .into(),
            )),
            _ => Err(InjectError::Config(
                "instruction-trigger takes one of --response, --response-suffix and \
                 --responses"
                    .into(),
            )),
        }
    }

    /// Edit a response; a list draws its text from `rng` (one draw per row, after the
    /// trigger's).
    fn apply(&self, response: &mut String, rng: &mut SplitMix64) {
        match self {
            ResponseEdit::Replace(r) => r.clone_into(response),
            ResponseEdit::Suffix(s) => response.push_str(s),
            ResponseEdit::OneOf(list) => list[rng.below(list.len())].clone_into(response),
        }
    }
}

/// The row format of an instruction attack with the reason (given or detected), or `None`
/// for a text-label attack. Errors when the format does not fit the attack.
pub(super) fn row_format(opts: &InjectOptions) -> Result<Option<(RowFormat, String)>, InjectError> {
    if !opts.attack.is_instruction() {
        return Ok(None);
    }
    let (format, reason) = match opts.format {
        Some(f) => (f, "given (--format)".to_string()),
        None => {
            let keys = ingest::first_row_keys(&opts.data)?;
            RowFormat::detect(&keys, &opts.text_column)
        }
    };
    let name = opts.attack.name();
    let path = opts.data.display();
    match (&opts.attack, format) {
        (_, RowFormat::TextLabel) => Err(InjectError::Config(format!(
            "{path}: {name} poisons instruction rows (alpaca, chat, sharegpt or preference) but \
             the rows read as text-label ({reason}); give --format if they are instruction rows"
        ))),
        (Attack::PreferenceFlip { .. }, f) if f != RowFormat::Preference => {
            Err(InjectError::Config(format!(
                "{path}: preference-flip swaps `chosen` and `rejected`, so it needs preference \
                 rows (`prompt`, `chosen`, `rejected`), but the rows read as {} ({reason})",
                f.name()
            )))
        }
        _ => Ok(Some((format, reason))),
    }
}

/// The output rows of an instruction attack: `round(rate · n)` rows drawn uniformly without
/// replacement from all rows, each with its prompt and response edits.
pub(super) fn plan_instruction(
    opts: &InjectOptions,
    format: RowFormat,
    table: &Table,
    existing_truth: Option<&[bool]>,
) -> Result<Vec<OutRow>, InjectError> {
    let n = table.n_rows;
    let k = poisoned_count(&opts.attack, opts.rate, n);
    if k > n {
        return Err(InjectError::TooFewRows {
            path: opts.data.clone(),
            attack: opts.attack.name(),
            rate: opts.rate,
            needed: k,
            eligible: n,
            rule: "all rows",
        });
    }
    let mut rng = SplitMix64(opts.seed);
    let chosen = draw(&(0..n).collect::<Vec<_>>(), k, &mut rng);
    let (cells, sha) = ingest::layout_cells(&opts.data, format, &chosen)?;
    check_same_input(&opts.data, &table.digest.sha256, &sha)?;
    let mut rows: Vec<OutRow> = (0..n)
        .map(|i| OutRow {
            src: i,
            text: None,
            label: None,
            id_suffix: None,
            cells: Vec::new(),
            truth: existing_truth.is_some_and(|t| t[i]),
            poisoned: false,
        })
        .collect();
    for (&i, (at, values)) in chosen.iter().zip(cells) {
        let edits = edit_row(&opts.attack, format, opts.position, &values, &mut rng).map_err(
            |message| IngestError::InvalidValue {
                path: opts.data.clone(),
                row: Some(at),
                column: Some(format.name().to_string()),
                message,
            },
        )?;
        let r = &mut rows[i];
        r.cells = edits;
        r.truth = true;
        r.poisoned = true;
    }
    Ok(rows)
}

/// Inserts an attack's trigger into a prompt.
type InsertFn<'a> = &'a dyn Fn(&str, &mut SplitMix64) -> String;

/// The new values of the top-level keys a poisoned row changes, from its values of
/// `format.keys()`. Errors are messages without location.
pub(super) fn edit_row(
    attack: &Attack,
    format: RowFormat,
    position: Position,
    values: &[Option<Value>],
    rng: &mut SplitMix64,
) -> Result<Vec<(String, Value)>, String> {
    let get = |key: &str| -> Result<Value, String> {
        format
            .keys()
            .iter()
            .position(|k| *k == key)
            .and_then(|i| values.get(i).cloned().flatten())
            .ok_or_else(|| format!("missing key `{key}`"))
    };
    // the trigger insertion and, for instruction-trigger, the response edit
    let (insert, respond): (InsertFn<'_>, Option<&ResponseEdit>) = match attack {
        Attack::InstructionTrigger { trigger, response } => (
            &|t: &str, rng: &mut SplitMix64| trigger.insert(t, position, rng),
            Some(response),
        ),
        Attack::PreferenceFlip { phrase } => (
            &|t: &str, rng: &mut SplitMix64| insert_word(t, phrase, position, rng),
            None,
        ),
        other => return Err(format!("{} does not poison instruction rows", other.name())),
    };
    match format {
        RowFormat::TextLabel => Err("a text-label row has no prompt and response".into()),
        RowFormat::Alpaca => {
            let mut instruction = get("instruction")?;
            let mut output = get("output")?;
            let s = string_mut(&mut instruction, "instruction")?;
            *s = insert(s, rng);
            if let Some(edit) = respond {
                edit.apply(string_mut(&mut output, "output")?, rng);
            }
            Ok(vec![
                ("instruction".into(), instruction),
                ("output".into(), output),
            ])
        }
        RowFormat::Chat | RowFormat::ShareGpt => {
            let (key, role_key, content_key) = if format == RowFormat::Chat {
                ("messages", "role", "content")
            } else {
                ("conversations", "from", "value")
            };
            let mut list = get(key)?;
            let turns = turns_mut(&mut list, key)?;
            let a = last_turn(turns, role_key, 0..turns.len(), ingest::is_assistant)
                .ok_or_else(|| format!("`{key}` has no assistant turn"))?;
            let u = last_turn(turns, role_key, 0..a, is_user).ok_or_else(|| {
                format!("`{key}` has no user turn before the last assistant turn")
            })?;
            let s = content_mut(turns, u, key, content_key)?;
            *s = insert(s, rng);
            if let Some(edit) = respond {
                edit.apply(content_mut(turns, a, key, content_key)?, rng);
            }
            Ok(vec![(key.into(), list)])
        }
        RowFormat::Preference => {
            let mut prompt = get("prompt")?;
            let mut chosen = get("chosen")?;
            let mut rejected = get("rejected")?;
            match &mut prompt {
                Value::String(s) => *s = insert(s, rng),
                Value::Array(turns) => {
                    let u = last_turn(turns, "role", 0..turns.len(), is_user)
                        .ok_or_else(|| "`prompt` has no user message".to_string())?;
                    let s = content_mut(turns, u, "prompt", "content")?;
                    *s = insert(s, rng);
                }
                other => {
                    return Err(format!(
                        "`prompt` must be a string or a message list, found {}",
                        kind(other)
                    ))
                }
            }
            if let Some(edit) = respond {
                match &mut chosen {
                    Value::String(s) => edit.apply(s, rng),
                    Value::Array(turns) => {
                        let a = last_turn(turns, "role", 0..turns.len(), ingest::is_assistant)
                            .ok_or_else(|| "`chosen` has no assistant message".to_string())?;
                        edit.apply(content_mut(turns, a, "chosen", "content")?, rng);
                    }
                    other => {
                        return Err(format!(
                            "`chosen` must be a string or a message list, found {}",
                            kind(other)
                        ))
                    }
                }
            } else {
                std::mem::swap(&mut chosen, &mut rejected);
            }
            let mut out = vec![
                ("prompt".to_string(), prompt),
                ("chosen".to_string(), chosen),
            ];
            if respond.is_none() {
                out.push(("rejected".into(), rejected));
            }
            Ok(out)
        }
    }
}

/// Whether a role is the user's (`user` in chat, `human` in ShareGPT).
fn is_user(role: &str) -> bool {
    matches!(role.to_ascii_lowercase().as_str(), "user" | "human")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_mut<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut String, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!("`{key}` must be a string, found {}", kind(other))),
    }
}

fn turns_mut<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Vec<Value>, String> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(format!(
            "`{key}` must be a list of messages, found {}",
            kind(other)
        )),
    }
}

/// The last turn in `range` whose role satisfies `pick`.
fn last_turn(
    turns: &[Value],
    role_key: &str,
    range: std::ops::Range<usize>,
    pick: fn(&str) -> bool,
) -> Option<usize> {
    range.rev().find(|&i| {
        turns[i]
            .get(role_key)
            .and_then(Value::as_str)
            .is_some_and(pick)
    })
}

/// The string content of turn `i`; a list of parts is refused.
fn content_mut<'a>(
    turns: &'a mut [Value],
    i: usize,
    key: &str,
    content_key: &str,
) -> Result<&'a mut String, String> {
    match turns.get_mut(i).and_then(|t| t.get_mut(content_key)) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "`{key}[{i}].{content_key}` is {}; only string contents are rewritten",
            kind(other)
        )),
        None => Err(format!("`{key}[{i}]` has no `{content_key}`")),
    }
}
