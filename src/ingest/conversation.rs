//! Instruction, chat and preference rows: the prompt and the response of each row.
//!
//! A row of instruction-tuning data is read as two texts, the **prompt** (what the model is
//! shown) and the **response** (what it is taught to answer), from one of these layouts:
//!
//! | format | keys | prompt | response |
//! | --- | --- | --- | --- |
//! | `alpaca` | `instruction`, `input` (optional), `output` | instruction, then `\n\n` and the input when it is not empty | output |
//! | `chat` | `messages` = [{`role`, `content`}…] | every message before the last `assistant` message, contents joined by `\n\n` | the last `assistant` message |
//! | `sharegpt` | `conversations` = [{`from`, `value`}…] | as `chat`; `gpt`, `assistant`, `model` and `chatgpt` are the assistant | the last assistant turn |
//! | `preference` | `prompt`, `chosen`, `rejected` | the prompt (a string, or a message list read as `chat`) | the chosen answer (a string, or the last assistant message of a list) |
//!
//! Parquet files are read the same way: a top-level column per key, a `messages` or
//! `conversations` column a list of structs.
//!
//! A `content` may be a string or a list of parts (`{"type": "text", "text": …}`, as in
//! multimodal chat sets); only text parts are read. A row that does not fit its layout (a
//! missing key, a message without content, a conversation without an assistant turn) is an
//! error naming the line and the key, like any malformed input.
//!
//! When no format is given, [`RowFormat::detect`] picks one from the first row's keys, and
//! the report says which and why. Layouts none of these fit are read with explicit paths
//! instead (`--prompt-field`, `--response-field`: [`super::FieldSpec`]).

use super::*;

/// How a row is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowFormat {
    /// A text column and a label column (the classification data of every detector but the
    /// instruction ones).
    #[default]
    TextLabel,
    /// `instruction`, `input`, `output`.
    Alpaca,
    /// `messages` = [{`role`, `content`}…].
    Chat,
    /// `conversations` = [{`from`, `value`}…].
    ShareGpt,
    /// `prompt`, `chosen`, `rejected`.
    Preference,
}

impl RowFormat {
    /// Every format, in the order detection tries them.
    pub const ALL: [RowFormat; 5] = [
        RowFormat::TextLabel,
        RowFormat::Chat,
        RowFormat::ShareGpt,
        RowFormat::Preference,
        RowFormat::Alpaca,
    ];

    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            RowFormat::TextLabel => "text-label",
            RowFormat::Alpaca => "alpaca",
            RowFormat::Chat => "chat",
            RowFormat::ShareGpt => "sharegpt",
            RowFormat::Preference => "preference",
        }
    }

    /// Parse the CLI spelling.
    pub fn parse(s: &str) -> Option<RowFormat> {
        RowFormat::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Whether rows are a prompt and a response (every format but `text-label`).
    pub fn has_responses(self) -> bool {
        self != RowFormat::TextLabel
    }

    /// The top-level keys a row of this format is read from (required ones first).
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            RowFormat::TextLabel => &[],
            RowFormat::Alpaca => &["instruction", "output", "input"],
            RowFormat::Chat => &["messages"],
            RowFormat::ShareGpt => &["conversations"],
            RowFormat::Preference => &["prompt", "chosen", "rejected"],
        }
    }

    /// Keys that must be present.
    pub(super) fn required(self) -> &'static [&'static str] {
        match self {
            RowFormat::Alpaca => &["instruction", "output"],
            other => other.keys(),
        }
    }

    /// The format of a file whose first row has `keys`, with the reason, given the text
    /// column's name: a row with the text column is `text-label`; otherwise the first
    /// instruction layout whose required keys are all there.
    pub fn detect(keys: &[String], text_column: &str) -> (RowFormat, String) {
        if keys.iter().any(|k| k == text_column) {
            return (
                RowFormat::TextLabel,
                format!("the first row has the text column `{text_column}`"),
            );
        }
        for f in RowFormat::ALL.into_iter().skip(1) {
            if f.required().iter().all(|r| keys.iter().any(|k| k == r)) {
                return (
                    f,
                    format!(
                        "the first row has no `{text_column}` column but has {}",
                        f.required()
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        (
            RowFormat::TextLabel,
            "no instruction, chat or preference layout matches the first row's keys".into(),
        )
    }

    /// The prompt and the response of one row, from the values of [`RowFormat::keys`] in
    /// order (`None`: key absent). Errors are messages without location; the caller adds it.
    pub fn prompt_response(self, values: &[Option<&Value>]) -> Result<(String, String), String> {
        self.prompt_response_rejected(values)
            .map(|(prompt, response, _)| (prompt, response))
    }

    /// As [`RowFormat::prompt_response`], plus the rejected answer of a preference row (read
    /// as the chosen one is; `None` for other formats).
    pub fn prompt_response_rejected(
        self,
        values: &[Option<&Value>],
    ) -> Result<(String, String, Option<String>), String> {
        let get = |i: usize| values.get(i).copied().flatten();
        let need = |i: usize| {
            get(i).ok_or_else(|| format!("missing key `{}` ({} row)", self.keys()[i], self.name()))
        };
        match self {
            RowFormat::TextLabel => Err("a text-label row has no prompt and response".into()),
            RowFormat::Alpaca => {
                let instruction = string(need(0)?, "instruction")?;
                let output = string(need(1)?, "output")?;
                let input = match get(2) {
                    None | Some(Value::Null) => String::new(),
                    Some(v) => string(v, "input")?,
                };
                let prompt = if input.is_empty() {
                    instruction
                } else {
                    format!("{instruction}\n\n{input}")
                };
                Ok((prompt, output, None))
            }
            RowFormat::Chat => {
                turns(need(0)?, "messages", "role", "content").map(|(p, r)| (p, r, None))
            }
            RowFormat::ShareGpt => {
                turns(need(0)?, "conversations", "from", "value").map(|(p, r)| (p, r, None))
            }
            RowFormat::Preference => {
                let prompt = match need(0)? {
                    Value::String(s) => s.clone(),
                    v @ Value::Array(_) => all_contents(v, "prompt")?,
                    other => {
                        return Err(format!(
                            "`prompt` must be a string or a message list, found {}",
                            json_kind(other)
                        ))
                    }
                };
                let chosen = answer(need(1)?, "chosen")?;
                // `rejected` must be readable too, though the response is the chosen answer
                let rejected = answer(need(2)?, "rejected")?;
                Ok((prompt, chosen, Some(rejected)))
            }
        }
    }
}

fn string(v: &Value, key: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "`{key}` must be a string, found {}",
            json_kind(other)
        )),
    }
}

/// A message's content: a string, or the text parts of a list of parts.
fn content(v: &Value, key: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for p in parts {
                match p {
                    Value::String(s) => texts.push(s.as_str()),
                    Value::Object(o) => {
                        if let Some(Value::String(t)) = o.get("text") {
                            texts.push(t.as_str());
                        }
                    }
                    _ => {}
                }
            }
            Ok(texts.join("\n"))
        }
        other => Err(format!(
            "`{key}` must be a string or a list of parts, found {}",
            json_kind(other)
        )),
    }
}

/// Whether a role (`role` of `chat`, `from` of `sharegpt`) is the assistant's.
pub(crate) fn is_assistant(role: &str) -> bool {
    matches!(
        role.to_ascii_lowercase().as_str(),
        "assistant" | "gpt" | "model" | "chatgpt" | "bot"
    )
}

/// The turns of a conversation as (role, content).
fn messages(
    v: &Value,
    key: &str,
    role_key: &str,
    content_key: &str,
) -> Result<Vec<(String, String)>, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "`{key}` must be a list of messages, found {}",
            json_kind(v)
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let Value::Object(o) = m else {
            return Err(format!(
                "`{key}[{i}]` must be an object, found {}",
                json_kind(m)
            ));
        };
        let role = match o.get(role_key) {
            Some(Value::String(r)) => r.clone(),
            Some(other) => {
                return Err(format!(
                    "`{key}[{i}].{role_key}` must be a string, found {}",
                    json_kind(other)
                ))
            }
            None => return Err(format!("`{key}[{i}]` has no `{role_key}`")),
        };
        let text = match o.get(content_key) {
            Some(Value::Null) | None => {
                return Err(format!("`{key}[{i}]` has no `{content_key}`"));
            }
            Some(c) => content(c, &format!("{key}[{i}].{content_key}"))?,
        };
        out.push((role, text));
    }
    Ok(out)
}

/// Prompt (every turn before the last assistant turn) and response (that turn).
fn turns(
    v: &Value,
    key: &str,
    role_key: &str,
    content_key: &str,
) -> Result<(String, String), String> {
    let m = messages(v, key, role_key, content_key)?;
    let last = m
        .iter()
        .rposition(|(r, _)| is_assistant(r))
        .ok_or_else(|| format!("`{key}` has no assistant turn"))?;
    let prompt = m[..last]
        .iter()
        .map(|(_, c)| c.as_str())
        .collect::<Vec<_>>()
        .join("\n\n");
    Ok((prompt, m[last].1.clone()))
}

/// Every content of a message list, joined.
fn all_contents(v: &Value, key: &str) -> Result<String, String> {
    Ok(messages(v, key, "role", "content")?
        .into_iter()
        .map(|(_, c)| c)
        .collect::<Vec<_>>()
        .join("\n\n"))
}

/// A preference answer: a string, or the last assistant message of a list.
fn answer(v: &Value, key: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(_) => Ok(turns(v, key, "role", "content")?.1),
        other => Err(format!(
            "`{key}` must be a string or a message list, found {}",
            json_kind(other)
        )),
    }
}
