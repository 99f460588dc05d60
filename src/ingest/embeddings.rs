//! Embedding files: `.npy` and safetensors.

use super::*;

/// Read a 2-D embedding matrix from a `.npy` or `.safetensors` file, with the file's digest.
///
/// `tensor` names the safetensors tensor to read; without it the file must hold exactly one
/// 2-D tensor. It is ignored for `.npy`. See the [module docs](self) for the accepted dtypes.
pub fn read_embeddings(
    path: &Path,
    tensor: Option<&str>,
) -> Result<(Array2<f32>, FileDigest), IngestError> {
    let (matrix, digest, finite) = read_embeddings_unchecked(path, tensor)?;
    if finite {
        check_shape(path, &matrix)?;
    } else {
        check_matrix(path, &matrix)?;
    }
    Ok((matrix, digest))
}

/// Rows of an embedding matrix that cannot be used, each with its 0-based number and the error
/// it would have raised.
pub type BadRows = Vec<(usize, IngestError)>;

/// [`read_embeddings`], except that a row holding a non-finite value is not an error: such
/// rows are returned beside the matrix, each with its 0-based number and the error it would
/// have raised (`scan --invalid-rows quarantine`).
pub fn read_embeddings_allowing_nonfinite(
    path: &Path,
    tensor: Option<&str>,
) -> Result<(Array2<f32>, FileDigest, BadRows), IngestError> {
    let (matrix, digest, finite) = read_embeddings_unchecked(path, tensor)?;
    check_shape(path, &matrix)?;
    let bad = if finite {
        Vec::new()
    } else {
        nonfinite_rows(path, &matrix)
    };
    Ok((matrix, digest, bad))
}

/// The rows of `m` holding a non-finite value, each with its 0-based number and the error
/// naming the first such value (`path` is the file the matrix came from).
pub fn nonfinite_rows(path: &Path, m: &Array2<f32>) -> Vec<(usize, IngestError)> {
    // all finite, the usual answer: one pass without early exit, which vectorises
    if let Some(all) = m.as_slice() {
        let finite = all
            .chunks(4096)
            .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()));
        if finite {
            return Vec::new();
        }
    }
    m.outer_iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let (j, v) = row.iter().enumerate().find(|(_, v)| !v.is_finite())?;
            Some((
                i,
                IngestError::InvalidValue {
                    path: path.to_path_buf(),
                    row: Some(RowRef::Row(i + 1)),
                    column: None,
                    message: format!(
                        "embedding value at column index {j} (0-based) is {v}; non-finite \
                         values are refused"
                    ),
                },
            ))
        })
        .collect()
}

/// The matrix, its file's digest, and whether every value is already known to be finite
/// (false: not checked yet).
fn read_embeddings_unchecked(
    path: &Path,
    tensor: Option<&str>,
) -> Result<(Array2<f32>, FileDigest, bool), IngestError> {
    regular_or_absent(path)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (matrix, digest, finite) = match ext.as_deref() {
        Some("npy") => read_npy_file(path)?,
        Some("safetensors") => {
            let (m, d) = read_safetensors_file(path, tensor)?;
            (m, d, false)
        }
        _ => {
            return Err(IngestError::UnsupportedFormat {
                path: path.to_path_buf(),
                message: "unsupported embedding format: expected a file ending in .npy or \
                          .safetensors"
                    .to_string(),
            })
        }
    };
    Ok((matrix, digest, finite))
}

/// Non-empty, and every value finite.
pub(super) fn check_matrix(path: &Path, m: &Array2<f32>) -> Result<(), IngestError> {
    check_shape(path, m)?;
    match nonfinite_rows(path, m).into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// At least one row and one column.
fn check_shape(path: &Path, m: &Array2<f32>) -> Result<(), IngestError> {
    if m.nrows() == 0 {
        return Err(IngestError::NoRows {
            path: path.to_path_buf(),
        });
    }
    if m.ncols() == 0 {
        return Err(IngestError::InvalidValue {
            path: path.to_path_buf(),
            row: None,
            column: None,
            message: "embeddings have zero columns".to_string(),
        });
    }
    Ok(())
}

pub(super) fn f64_to_f32(m: Array2<f64>, path: &Path) -> Result<Array2<f32>, IngestError> {
    // Find values that overflow f32 before converting, so the message shows the original.
    for (i, row) in m.outer_iter().enumerate() {
        if let Some((j, v)) = row
            .iter()
            .enumerate()
            .find(|(_, v)| v.is_finite() && !(**v as f32).is_finite())
        {
            return Err(IngestError::InvalidValue {
                path: path.to_path_buf(),
                row: Some(RowRef::Row(i + 1)),
                column: None,
                message: format!(
                    "embedding value at column index {j} (0-based) is {v}, beyond the range \
                     of f32"
                ),
            });
        }
    }
    Ok(m.mapv(|v| v as f32))
}

/// Header fields of a `.npy` file that matter here.
#[derive(Debug)]
pub(super) struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
    /// Bytes of magic, version, length field and header dict.
    prefix_len: usize,
}

/// A tiny parser for the Python literal of a `.npy` header dict (strings, booleans, integers,
/// tuples, lists, dicts, None). Never evaluates anything.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PyLit {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Seq(Vec<PyLit>),
    Dict(Vec<(PyLit, PyLit)>),
}

pub(super) struct PyParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl PyParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyLit, String> {
        if depth > 16 {
            return Err("header nested too deeply".to_string());
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != q {
                    if self.s[self.i] == b'\\' {
                        return Err("escapes in header strings are not supported".to_string());
                    }
                    self.i += 1;
                }
                if self.i >= self.s.len() {
                    return Err("unterminated string in header".to_string());
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                Ok(PyLit::Str(text))
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.i += 1;
                        return Ok(PyLit::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {}
                        _ => return Err(format!("expected ',' at byte {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(PyLit::Dict(items));
                    }
                    let k = self.value(depth + 1)?;
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("expected ',' at byte {}", self.i)),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                // Python 2 long suffix, as written by old numpy.
                if self.i < self.s.len() && self.s[self.i] == b'L' {
                    self.i += 1;
                }
                let digits = String::from_utf8_lossy(&self.s[start..self.i]);
                digits
                    .trim_end_matches('L')
                    .parse::<u64>()
                    .map(PyLit::Int)
                    .map_err(|_| format!("integer {digits} out of range"))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Ok(PyLit::Bool(true)),
                    b"False" => Ok(PyLit::Bool(false)),
                    b"None" => Ok(PyLit::None),
                    other => Err(format!(
                        "unexpected name {:?} in header",
                        String::from_utf8_lossy(other)
                    )),
                }
            }
            Some(c) => Err(format!(
                "unexpected character {:?} at byte {}",
                c as char, self.i
            )),
            None => Err("header ends early".to_string()),
        }
    }
}

/// Read and check the `.npy` header from `reader`, returning it with the exact bytes read.
pub(super) fn read_npy_header(reader: &mut impl Read) -> Result<(NpyHeader, Vec<u8>), String> {
    let mut prefix = vec![0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|e| format!("not a .npy file (cannot read the magic string: {e})"))?;
    if &prefix[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic string)".to_string());
    }
    let (major, minor) = (prefix[6], prefix[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(format!("unsupported .npy format version {major}.{minor}")),
    };
    let mut len_buf = vec![0u8; len_bytes];
    reader
        .read_exact(&mut len_buf)
        .map_err(|e| format!("truncated .npy header: {e}"))?;
    prefix.extend_from_slice(&len_buf);
    let header_len = len_buf
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if header_len > NPY_MAX_HEADER {
        return Err(format!(
            ".npy header of {header_len} bytes is larger than the {NPY_MAX_HEADER} accepted"
        ));
    }
    let mut header = vec![0u8; header_len];
    reader
        .read_exact(&mut header)
        .map_err(|e| format!("truncated .npy header: {e}"))?;
    prefix.extend_from_slice(&header);

    let mut parser = PyParser { s: &header, i: 0 };
    let dict = match parser.value(0) {
        Ok(PyLit::Dict(items)) => items,
        Ok(_) => return Err(".npy header is not a dict".to_string()),
        Err(e) => return Err(format!("cannot parse the .npy header: {e}")),
    };
    let get = |key: &str| {
        dict.iter()
            .find(|(k, _)| *k == PyLit::Str(key.to_string()))
            .map(|(_, v)| v)
    };
    let descr = match get("descr") {
        Some(PyLit::Str(s)) => s.clone(),
        Some(_) => {
            return Err(
                "structured (record) dtypes are not supported; expected a 2-D float array"
                    .to_string(),
            )
        }
        None => return Err(".npy header has no 'descr'".to_string()),
    };
    if descr.contains('O') {
        return Err(format!(
            "dtype '{descr}' is an object array; object/pickled arrays are refused because \
             loading them would require unpickling (running code from the file)"
        ));
    }
    if descr != "<f4" && descr != "<f8" {
        return Err(format!(
            "unsupported dtype '{descr}'; only little-endian float32 ('<f4') and float64 \
             ('<f8') are accepted"
        ));
    }
    let fortran_order = match get("fortran_order") {
        Some(PyLit::Bool(b)) => *b,
        _ => return Err(".npy header has no boolean 'fortran_order'".to_string()),
    };
    let shape = match get("shape") {
        Some(PyLit::Seq(items)) => items
            .iter()
            .map(|v| match v {
                PyLit::Int(n) => usize::try_from(*n).map_err(|_| "shape too large".to_string()),
                _ => Err("'shape' must be a tuple of integers".to_string()),
            })
            .collect::<Result<Vec<usize>, String>>()?,
        _ => return Err(".npy header has no tuple 'shape'".to_string()),
    };
    if shape.len() != 2 {
        return Err(format!(
            "array has {} dimensions (shape {shape:?}); embeddings must be 2-D (rows × dims)",
            shape.len()
        ));
    }
    let prefix_len = prefix.len();
    Ok((
        NpyHeader {
            descr,
            fortran_order,
            shape,
            prefix_len,
        },
        prefix,
    ))
}

/// A `.npy` file being read, every byte hashed.
type NpyReader = HashingReader<BufReader<File>>;

/// The read buffer of an `.npy` file read whole: the data after the header is read straight
/// into the matrix, so a larger buffer would only hold (and copy once more) its first bytes.
const NPY_HEADER_BUFFER: usize = 1 << 12;

/// The `.npy` file opened through a read buffer of `capacity` bytes, past its header (hashing
/// what it reads), the header and its bytes, once the data size the header implies is checked
/// against the file's size (before anything is allocated for it).
fn open_npy(path: &Path, capacity: usize) -> Result<(NpyReader, NpyHeader, Vec<u8>), IngestError> {
    let npy_err = |message: String| IngestError::Npy {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| IngestError::io(path, e))?.len();
    let mut reader = HashingReader::new(BufReader::with_capacity(capacity, file));
    let (header, prefix) = read_npy_header(&mut reader).map_err(npy_err)?;

    // Check the data size against the file size before anything is allocated for it.
    check_npy_size(&header, file_len).map_err(npy_err)?;
    Ok((reader, header, prefix))
}

/// Whether the header's shape and item size, after its own bytes, make a file of `file_len`
/// bytes; why not, if not.
fn check_npy_size(header: &NpyHeader, file_len: u64) -> Result<(), String> {
    let item = if header.descr == "<f4" { 4u64 } else { 8u64 };
    let expected = header
        .shape
        .iter()
        .try_fold(item, |acc, &d| acc.checked_mul(d as u64))
        .and_then(|data| data.checked_add(header.prefix_len as u64));
    match expected {
        Some(e) if e == file_len => Ok(()),
        Some(e) => Err(format!(
            "file is {file_len} bytes but its header (shape {:?}, dtype '{}') implies \
             {e}; the file is truncated or has trailing bytes",
            header.shape, header.descr
        )),
        None => Err(format!("shape {:?} is too large", header.shape)),
    }
}

/// Backs the pages of a freshly allocated buffer now, in one call to the kernel, rather than one
/// page fault for each 4 KiB page as a read fills it (a matrix of 7 MB: about 1 700 faults, each
/// a trap into the kernel). Only whole pages inside the buffer are touched; their contents stay
/// what they were. A kernel without `MADV_POPULATE_WRITE` (before Linux 5.14) refuses the
/// advice, and the pages are faulted in by the read as before.
fn populate(buf: &mut [u8]) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const PAGE: usize = 4096;
        let start = buf.as_mut_ptr() as usize;
        let first = start.div_ceil(PAGE) * PAGE;
        let end = (start + buf.len()) / PAGE * PAGE;
        if end > first {
            // SAFETY: [first, end) lies inside `buf`, borrowed mutably for the call; the advice
            // maps its pages writable without reading or writing their contents, and an error
            // (an old kernel) changes nothing.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    end - first,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = buf;
}

/// The matrix of an `.npy` file, its digest, and whether every value is known to be finite
/// (checked block by block as the common layout is read; false: not checked).
pub(super) fn read_npy_file(path: &Path) -> Result<(Array2<f32>, FileDigest, bool), IngestError> {
    let npy_err = |message: String| IngestError::Npy {
        path: path.to_path_buf(),
        message,
    };
    let (mut reader, header, prefix) = open_npy(path, NPY_HEADER_BUFFER)?;

    if header.descr == "<f4" && !header.fortran_order && header.shape.len() == 2 {
        // the common case: little-endian f32 in row order, read straight into the matrix
        // while another thread hashes what was read
        let (rows, cols) = (header.shape[0], header.shape[1]);
        // plain pages: advising huge pages (MADV_HUGEPAGE) took fewer page faults but, on a
        // virtual machine, zeroing each fresh 2 MiB page could cost more than the faults saved
        // (docs/design.md, Speed)
        let mut data = vec![0f32; rows * cols];
        let (inner, hasher, bytes) = reader.into_parts().map_err(|e| IngestError::io(path, e))?;
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut data);
        populate(dst);
        // every value is checked for finiteness right after its block is hashed, while the
        // block is still in the cache (a block whose bytes are not whole f32 values, which
        // cannot happen for this layout, leaves the check to the caller)
        let mut finite = true;
        let digest = read_hashing_into(inner, hasher, bytes, dst, path, &mut |block| {
            finite &= bytemuck::try_cast_slice::<u8, f32>(block)
                .is_ok_and(|v| v.iter().fold(true, |ok, x| ok & x.is_finite()));
        })?;
        // the bytes are little-endian: nothing to do on a little-endian machine
        for v in &mut data {
            *v = f32::from_bits(u32::from_le(v.to_bits()));
        }
        let matrix = Array2::from_shape_vec((rows, cols), data)
            .map_err(|e| npy_err(format!("cannot read the array: {e}")))?;
        // the check read the bytes as native f32: the file's own values on a little-endian
        // machine only
        return Ok((matrix, digest, finite && cfg!(target_endian = "little")));
    }
    let matrix = {
        let mut chained = io::Cursor::new(prefix).chain(&mut reader);
        if header.descr == "<f4" {
            Array2::<f32>::read_npy(&mut chained)
                .map_err(|e| npy_err(format!("cannot read the array: {e}")))?
        } else {
            let m = Array2::<f64>::read_npy(&mut chained)
                .map_err(|e| npy_err(format!("cannot read the array: {e}")))?;
            f64_to_f32(m, path)?
        }
    };
    let digest = reader.finish(path)?;
    let matrix = if header.fortran_order {
        // Same logical matrix; store it in row-major order for the detectors.
        let mut c = Array2::<f32>::zeros(matrix.raw_dim().set_f(false));
        c.assign(&matrix);
        c
    } else {
        matrix
    };
    Ok((matrix, digest, false))
}

pub(super) fn read_safetensors_file(
    path: &Path,
    name: Option<&str>,
) -> Result<(Array2<f32>, FileDigest), IngestError> {
    use safetensors::{Dtype, SafeTensors};
    let st_err = |message: String| IngestError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let mut reader = HashingReader::new(file);
    let mut buf = Vec::new();
    reader
        .read_to_end(&mut buf)
        .map_err(|e| IngestError::io(path, e))?;
    let digest = reader.finish(path)?;

    let st = SafeTensors::deserialize(&buf)
        .map_err(|e| st_err(format!("not a valid safetensors file: {e}")))?;
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    let describe = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| match st.tensor(n) {
                Ok(t) => format!("\"{n}\" {:?} {:?}", t.dtype(), t.shape()),
                Err(_) => format!("\"{n}\""),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match name {
        Some(n) => {
            if !names.contains(&n) {
                return Err(st_err(format!(
                    "no tensor named \"{n}\"; available tensors: {}",
                    describe(&names)
                )));
            }
            n
        }
        None => {
            let two_d: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| st.tensor(n).is_ok_and(|t| t.shape().len() == 2))
                .collect();
            match two_d.as_slice() {
                [one] => *one,
                [] => {
                    return Err(st_err(format!(
                        "no 2-D tensor found; available tensors: {}",
                        describe(&names)
                    )))
                }
                _ => {
                    return Err(st_err(format!(
                        "{} 2-D tensors found; name the one to use. Available tensors: {}",
                        two_d.len(),
                        describe(&names)
                    )))
                }
            }
        }
    };
    let t = st
        .tensor(chosen)
        .map_err(|e| st_err(format!("cannot read tensor \"{chosen}\": {e}")))?;
    let (rows, cols) = match t.shape() {
        [r, c] => (*r, *c),
        other => {
            return Err(st_err(format!(
                "tensor \"{chosen}\" has shape {other:?}; embeddings must be 2-D (rows × dims)"
            )))
        }
    };
    let bad_shape = |e: ndarray::ShapeError| st_err(format!("tensor \"{chosen}\": {e}"));
    let matrix = match t.dtype() {
        Dtype::F32 => {
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Array2::from_shape_vec((rows, cols), v).map_err(bad_shape)?
        }
        Dtype::F64 => {
            let v: Vec<f64> = t
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            f64_to_f32(
                Array2::from_shape_vec((rows, cols), v).map_err(bad_shape)?,
                path,
            )?
        }
        other => {
            return Err(st_err(format!(
                "tensor \"{chosen}\" has dtype {other:?}; only F32 and F64 are accepted"
            )))
        }
    };
    Ok((matrix, digest))
}

/// The rows of a `.npy` embedding matrix read in order, a batch at a time, hashing every byte:
/// what a streaming scan holds of the matrix is one batch. Little-endian `f4` and `f8` arrays
/// in row order; a Fortran-order file has no row to read before the last column, and is
/// refused (convert it with numpy's `ascontiguousarray`). Values are checked as
/// [`read_embeddings`] checks them.
pub struct NpyRows {
    reader: NpySource,
    path: PathBuf,
    rows: usize,
    cols: usize,
    f64s: bool,
    next: usize,
    buf: Vec<u8>,
}

/// Where [`NpyRows`] reads from: the whole file, hashed as it is read, or a part of a file
/// whose digest is already known (a partition's rows).
enum NpySource {
    Hashing(NpyReader),
    Known(BufReader<File>, FileDigest),
}

impl Read for NpySource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            NpySource::Hashing(r) => r.read(buf),
            NpySource::Known(r, _) => r.read(buf),
        }
    }
}

impl NpyRows {
    /// Open the file and read its header.
    pub fn open(path: &Path) -> Result<NpyRows, IngestError> {
        let (reader, header, _) = open_npy(path, HASH_BUFFER)?;
        Self::with_header(NpySource::Hashing(reader), header, path)
    }

    /// The rows from row `first` on of a file an earlier read hashed as `known` (the rows of
    /// one partition of a scan): the file is not hashed again, its size must be `known`'s
    /// ([`IngestError::InputChanged`] otherwise), and [`NpyRows::finish`] returns `known`.
    /// Errors name rows by their place in the whole file.
    pub fn open_at(path: &Path, first: usize, known: &FileDigest) -> Result<NpyRows, IngestError> {
        let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
        let len = file.metadata().map_err(|e| IngestError::io(path, e))?.len();
        if len != known.bytes {
            return Err(IngestError::InputChanged {
                path: path.to_path_buf(),
                expected: known.sha256.clone(),
                actual: format!("a file of {len} bytes, not {}", known.bytes),
            });
        }
        let mut reader = BufReader::with_capacity(HASH_BUFFER, file);
        let npy_err = |message: String| IngestError::Npy {
            path: path.to_path_buf(),
            message,
        };
        let (header, _) = read_npy_header(&mut reader).map_err(npy_err)?;
        // the header must describe the file as it is, as `open` checks it
        check_npy_size(&header, len).map_err(npy_err)?;
        let mut rows = Self::with_header(NpySource::Known(reader, known.clone()), header, path)?;
        if first > rows.rows {
            return Err(IngestError::InvalidValue {
                path: path.to_path_buf(),
                row: None,
                column: None,
                message: format!("row {first} asked for; the file has {} rows", rows.rows),
            });
        }
        // within the file: first ≤ rows, and rows × cols × item is its data size
        let item: u64 = if rows.f64s { 8 } else { 4 };
        let skip = first as u64 * rows.cols as u64 * item;
        if let NpySource::Known(r, _) = &mut rows.reader {
            let skip = i64::try_from(skip).map_err(|_| npy_err("too large to seek".into()))?;
            r.seek_relative(skip)
                .map_err(|e| IngestError::io(path, e))?;
        }
        rows.next = first;
        Ok(rows)
    }

    fn with_header(
        reader: NpySource,
        header: NpyHeader,
        path: &Path,
    ) -> Result<NpyRows, IngestError> {
        if header.fortran_order {
            return Err(IngestError::Npy {
                path: path.to_path_buf(),
                message: "the array is in Fortran (column) order, which cannot be read a row at \
                          a time; write it in row order (numpy.ascontiguousarray)"
                    .to_string(),
            });
        }
        let (rows, cols) = (header.shape[0], header.shape[1]);
        if rows == 0 {
            return Err(IngestError::NoRows {
                path: path.to_path_buf(),
            });
        }
        if cols == 0 {
            return Err(IngestError::InvalidValue {
                path: path.to_path_buf(),
                row: None,
                column: None,
                message: "embeddings have zero columns".to_string(),
            });
        }
        Ok(NpyRows {
            reader,
            path: path.to_path_buf(),
            rows,
            cols,
            f64s: header.descr == "<f8",
            next: 0,
            buf: Vec::new(),
        })
    }

    /// Rows in the file.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The next `n` rows (fewer at the end of the file), as [`read_embeddings`] would give
    /// them; a non-finite value is an error naming its row in the file.
    pub fn next_rows(&mut self, n: usize) -> Result<Array2<f32>, IngestError> {
        let n = n.min(self.rows - self.next);
        let item = if self.f64s { 8 } else { 4 };
        self.buf.resize(n * self.cols * item, 0);
        self.reader
            .read_exact(&mut self.buf)
            .map_err(|e| IngestError::io(&self.path, e))?;
        let values: Vec<f32> = if self.f64s {
            let v: Vec<f64> = self
                .buf
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect();
            let m = Array2::from_shape_vec((n, self.cols), v).map_err(|e| IngestError::Npy {
                path: self.path.clone(),
                message: format!("cannot read the array: {e}"),
            })?;
            f64_to_f32(m, &self.path)
                .map_err(|e| renumber(e, self.next))?
                .into_raw_vec_and_offset()
                .0
        } else {
            self.buf
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let m = Array2::from_shape_vec((n, self.cols), values).map_err(|e| IngestError::Npy {
            path: self.path.clone(),
            message: format!("cannot read the array: {e}"),
        })?;
        if let Some((_, e)) = nonfinite_rows(&self.path, &m).into_iter().next() {
            return Err(renumber(e, self.next));
        }
        self.next += n;
        Ok(m)
    }

    /// Hash what is left of the file and return its digest (the digest it was opened with,
    /// for [`NpyRows::open_at`]).
    pub fn finish(self) -> Result<FileDigest, IngestError> {
        match self.reader {
            NpySource::Hashing(r) => r.finish(&self.path),
            NpySource::Known(_, known) => Ok(known),
        }
    }
}

/// An error about row `i` (1-based) of a batch, about row `first + i` of the file.
fn renumber(e: IngestError, first: usize) -> IngestError {
    match e {
        IngestError::InvalidValue {
            path,
            row: Some(RowRef::Row(i)),
            column,
            message,
        } => IngestError::InvalidValue {
            path,
            row: Some(RowRef::Row(first + i)),
            column,
            message,
        },
        other => other,
    }
}
