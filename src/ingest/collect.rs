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

impl Role {
    /// The role's name in an invalid row's reason (`text-null`).
    pub(super) fn name(self) -> &'static str {
        match self {
            Role::Text => "text",
            Role::Label => "label",
            Role::Id => "id",
            Role::GroundTruth => "ground-truth",
            Role::Embedding => "embedding",
        }
    }
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
    /// Rows (0-based) whose embedding is a placeholder: zeros, filled in by `finish`.
    pub(super) embedding_holes: Vec<usize>,
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
            embedding_holes: Vec::new(),
        }
    }

    /// A placeholder for `role` in row `row` (0-based), which is invalid.
    pub(super) fn push_role_placeholder(&mut self, role: Role, row: usize) {
        match role {
            Role::Text => self.texts.iter_mut().for_each(|t| t.push(String::new())),
            Role::Label => self.labels.iter_mut().for_each(|l| l.push(String::new())),
            Role::Id => self.ids.iter_mut().for_each(|i| i.push(String::new())),
            Role::GroundTruth => self.ground_truth.iter_mut().for_each(|g| g.push(false)),
            Role::Embedding => {
                if self.embeddings.is_some() {
                    self.embedding_holes.push(row);
                }
            }
        }
    }

    /// A placeholder for an instruction row's texts.
    pub(super) fn push_turn_placeholder(&mut self) {
        if let (Some(t), Some(r)) = (self.texts.as_mut(), self.responses.as_mut()) {
            t.push(String::new());
            r.push(String::new());
        }
        if let Some(x) = self.rejected.as_mut() {
            x.push(String::new());
        }
    }

    /// Placeholders for every requested column of row `row` (0-based), which is invalid.
    pub(super) fn push_row_placeholder(&mut self, roles: &[(Role, &str)], row: usize, turn: bool) {
        for (role, _) in roles {
            self.push_role_placeholder(*role, row);
        }
        if turn {
            self.push_turn_placeholder();
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

    /// Whether the rows collected so far can be handed out as a batch: not while a row's
    /// embedding is a placeholder whose width no readable row has set yet.
    pub(super) fn can_take(&self) -> bool {
        self.embeddings.is_none() || self.embedding_holes.is_empty() || self.dim.is_some()
    }

    /// The rows `first..first + n_rows` collected since the last batch, as a [`Batch`] with
    /// their invalid rows; the columns start empty again, while the label kind and the
    /// embedding width carry over to the rows still to come.
    pub(super) fn take_batch(
        &mut self,
        path: &Path,
        first: usize,
        n_rows: usize,
        invalid: Vec<InvalidRow>,
    ) -> Result<Batch, IngestError> {
        let embeddings = match self.embeddings.as_mut() {
            None => None,
            Some(data) => {
                let mut data = std::mem::take(data);
                let d = self.dim.map_or(0, |(d, _)| d);
                if !self.embedding_holes.is_empty() {
                    let holes: Vec<usize> =
                        self.embedding_holes.drain(..).map(|h| h - first).collect();
                    data = fill_holes(data, &holes, n_rows, d);
                }
                let m = Array2::from_shape_vec((n_rows, d), data).map_err(|e| {
                    IngestError::InvalidValue {
                        path: path.to_path_buf(),
                        row: None,
                        column: None,
                        message: format!("embedding matrix has an inconsistent shape: {e}"),
                    }
                })?;
                Some(m)
            }
        };
        Ok(Batch {
            first_row: first,
            n_rows,
            texts: self.texts.as_mut().map(std::mem::take),
            responses: self.responses.as_mut().map(std::mem::take),
            rejected: self.rejected.as_mut().map(std::mem::take),
            labels: self.labels.as_mut().map(std::mem::take),
            ids: self.ids.as_mut().map(std::mem::take),
            ground_truth: self.ground_truth.as_mut().map(std::mem::take),
            embeddings,
            invalid,
        })
    }
}

/// Hands the rows a reader collects to its caller in batches of about `batch_rows` rows.
pub(super) struct Batcher<'a, E> {
    pub(super) out: Collector,
    path: &'a Path,
    batch_rows: usize,
    /// First row of the batch being collected.
    first: usize,
    /// Its invalid rows.
    invalid: Vec<InvalidRow>,
    sink: &'a mut dyn FnMut(Batch) -> Result<(), E>,
}

impl<'a, E: From<IngestError>> Batcher<'a, E> {
    pub(super) fn new(
        spec: &ColumnSpec,
        path: &'a Path,
        batch_rows: usize,
        sink: &'a mut dyn FnMut(Batch) -> Result<(), E>,
    ) -> Self {
        Batcher {
            out: Collector::new(spec),
            path,
            batch_rows: batch_rows.max(1),
            first: 0,
            invalid: Vec::new(),
            sink,
        }
    }

    /// Number the rows from `first` (a read that starts inside the file).
    pub(super) fn start_at(&mut self, first: usize) {
        self.first = first;
    }

    /// Record an invalid row of the batch being collected.
    pub(super) fn invalid(&mut self, row: InvalidRow) {
        self.invalid.push(row);
    }

    /// Called with the number of rows read so far: hands out the batch once it is full.
    pub(super) fn rows_read(&mut self, n_rows: usize) -> Result<(), E> {
        if n_rows - self.first >= self.batch_rows && self.out.can_take() {
            self.flush(n_rows)?;
        }
        Ok(())
    }

    fn flush(&mut self, n_rows: usize) -> Result<(), E> {
        let invalid = std::mem::take(&mut self.invalid);
        let batch = self
            .out
            .take_batch(self.path, self.first, n_rows - self.first, invalid)?;
        self.first = n_rows;
        (self.sink)(batch)
    }

    /// The last rows, then what was read (a file without rows is an error).
    pub(super) fn finish(
        mut self,
        format: Format,
        digest: FileDigest,
        n_rows: usize,
    ) -> Result<ReadSummary, E> {
        if n_rows == 0 {
            return Err(IngestError::NoRows { path: digest.path }.into());
        }
        if n_rows > self.first {
            self.flush(n_rows)?;
        }
        Ok(ReadSummary {
            format,
            digest,
            n_rows,
            label_kind: self.out.label_kind,
        })
    }
}

/// The rows of `data` (`d` values each, for every row but the `holes`) with a zero row at each
/// hole, `n_rows` rows in all.
fn fill_holes(data: Vec<f32>, holes: &[usize], n_rows: usize, d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n_rows * d);
    let mut rows = data.chunks_exact(d.max(1));
    let mut holes = holes.iter().peekable();
    for i in 0..n_rows {
        if holes.next_if(|&&h| h == i).is_some() {
            out.extend(std::iter::repeat_n(0.0, d));
        } else if let Some(r) = rows.next() {
            out.extend_from_slice(r);
        }
    }
    out
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
