//! Column collection shared by both table formats.

use super::*;

/// Role of a requested column, used in messages.
#[derive(Clone, Copy)]
pub(super) enum Role {
    Text,
    Label,
    Id,
    GroundTruth,
    Embedding,
}

/// Accumulates the requested columns, row by row.
pub(super) struct Collector {
    pub(super) texts: Option<Vec<String>>,
    pub(super) responses: Option<Vec<String>>,
    pub(super) rejected: Option<Vec<String>>,
    pub(super) labels: Option<Vec<String>>,
    pub(super) label_kind: Option<LabelKind>,
    pub(super) ids: Option<Vec<String>>,
    pub(super) ground_truth: Option<Vec<bool>>,
    pub(super) embeddings: Option<Vec<f32>>,
    /// Embedding length and the row that set it.
    pub(super) dim: Option<(usize, RowRef)>,
}

impl Collector {
    pub(super) fn new(spec: &ColumnSpec) -> Self {
        Collector {
            texts: (spec.text.is_some() || spec.rows.has_responses()).then(Vec::new),
            responses: spec.rows.has_responses().then(Vec::new),
            rejected: (spec.rejected && spec.rows == RowLayout::Format(RowFormat::Preference))
                .then(Vec::new),
            labels: spec.label.as_ref().map(|_| Vec::new()),
            label_kind: None,
            ids: spec.id.as_ref().map(|_| Vec::new()),
            ground_truth: spec.ground_truth.as_ref().map(|_| Vec::new()),
            embeddings: spec.embedding.as_ref().map(|_| Vec::new()),
            dim: None,
        }
    }

    /// Store one instruction row's texts.
    pub(super) fn push_turn(&mut self, turn: Turn) {
        if let (Some(t), Some(r)) = (self.texts.as_mut(), self.responses.as_mut()) {
            t.push(turn.prompt);
            r.push(turn.response);
        }
        if let (Some(x), Some(rejected)) = (self.rejected.as_mut(), turn.rejected) {
            x.push(rejected);
        }
    }

    pub(super) fn push_label(&mut self, value: String, kind: LabelKind) -> Result<(), String> {
        match self.label_kind {
            None => self.label_kind = Some(kind),
            Some(k) if k != kind => {
                return Err(format!(
                    "label is {kind} but earlier labels are {k}; all labels must have one kind"
                ))
            }
            Some(_) => {}
        }
        if let Some(labels) = self.labels.as_mut() {
            labels.push(value);
        }
        Ok(())
    }

    /// Check a just-pushed embedding row of `len` values against the first row's length.
    pub(super) fn check_dim(&mut self, len: usize, row: RowRef) -> Result<(), String> {
        if len == 0 {
            return Err("embedding is empty".to_string());
        }
        match self.dim {
            None => {
                self.dim = Some((len, row));
                Ok(())
            }
            Some((d, _)) if d == len => Ok(()),
            Some((d, first)) => Err(format!(
                "embedding has {len} values but the first row ({first}) has {d}; all rows \
                 must have the same length"
            )),
        }
    }

    pub(super) fn finish(
        self,
        format: Format,
        digest: FileDigest,
        n_rows: usize,
    ) -> Result<Table, IngestError> {
        if n_rows == 0 {
            return Err(IngestError::NoRows { path: digest.path });
        }
        let embeddings = match self.embeddings {
            None => None,
            Some(data) => {
                let d = self.dim.map_or(0, |(d, _)| d);
                let m = Array2::from_shape_vec((n_rows, d), data).map_err(|e| {
                    IngestError::InvalidValue {
                        path: digest.path.clone(),
                        row: None,
                        column: None,
                        message: format!("embedding matrix has an inconsistent shape: {e}"),
                    }
                })?;
                Some(m)
            }
        };
        Ok(Table {
            format,
            digest,
            n_rows,
            texts: self.texts,
            responses: self.responses,
            rejected: self.rejected,
            labels: self.labels,
            label_kind: self.label_kind,
            ids: self.ids,
            ground_truth: self.ground_truth,
            embeddings,
        })
    }
}

/// Check an embedding value (already converted to `f32`) is finite.
pub(super) fn finite(v: f64, k: usize) -> Result<f32, String> {
    let f = v as f32;
    if f.is_finite() {
        Ok(f)
    } else if v.is_finite() {
        Err(format!(
            "embedding element {k} (0-based) is {v}, beyond the range of f32"
        ))
    } else {
        Err(format!(
            "embedding element {k} (0-based) is {v}; non-finite values are refused"
        ))
    }
}
