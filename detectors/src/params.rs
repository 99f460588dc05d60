//! Small helpers to read a detector's raw TOML parameter table into checked values.

use crate::ParamError;

/// Reads typed values out of a raw parameter table, and rejects keys nobody asked for.
pub(crate) struct ParamReader<'a> {
    code: &'static str,
    table: &'a toml::Table,
    known: Vec<&'static str>,
}

impl<'a> ParamReader<'a> {
    pub(crate) fn new(code: &'static str, table: &'a toml::Table) -> Self {
        ParamReader {
            code,
            table,
            known: Vec::new(),
        }
    }

    fn invalid(&self, key: &str, problem: String) -> ParamError {
        ParamError::Invalid {
            code: self.code,
            key: key.to_string(),
            problem,
        }
    }

    /// A float in `[lo, hi]`, or `default` when absent. Integers are accepted.
    pub(crate) fn f64(
        &mut self,
        key: &'static str,
        default: f64,
        lo: f64,
        hi: f64,
    ) -> Result<f64, ParamError> {
        self.known.push(key);
        let v = match self.table.get(key) {
            None => return Ok(default),
            Some(toml::Value::Float(f)) => *f,
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(other) => {
                return Err(self.invalid(key, format!("must be a number, got {}", other.type_str())))
            }
        };
        if !(lo..=hi).contains(&v) {
            return Err(self.invalid(key, format!("must be in [{lo}, {hi}], got {v}")));
        }
        Ok(v)
    }

    /// An integer in `[lo, hi]`, or `default` when absent.
    pub(crate) fn usize(
        &mut self,
        key: &'static str,
        default: usize,
        lo: usize,
        hi: usize,
    ) -> Result<usize, ParamError> {
        self.known.push(key);
        let v = match self.table.get(key) {
            None => return Ok(default),
            Some(toml::Value::Integer(i)) if *i >= 0 => *i as usize,
            Some(other) => {
                return Err(
                    self.invalid(key, format!("must be a non-negative integer, got {other}"))
                )
            }
        };
        if !(lo..=hi).contains(&v) {
            return Err(self.invalid(key, format!("must be in [{lo}, {hi}], got {v}")));
        }
        Ok(v)
    }

    /// A boolean, or `default` when absent.
    #[allow(dead_code)]
    pub(crate) fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, ParamError> {
        self.known.push(key);
        match self.table.get(key) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(other) => Err(self.invalid(key, format!("must be true or false, got {other}"))),
        }
    }

    /// Fails on the first key that no getter asked for.
    pub(crate) fn finish(self) -> Result<(), ParamError> {
        let mut keys: Vec<&String> = self.table.keys().collect();
        keys.sort();
        for k in keys {
            if !self.known.contains(&k.as_str()) {
                return Err(ParamError::Unknown {
                    code: self.code,
                    key: k.clone(),
                    known: self.known.join(", "),
                });
            }
        }
        Ok(())
    }
}
