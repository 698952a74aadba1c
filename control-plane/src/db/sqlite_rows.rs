//! Many rows in one SQLite statement: a JSON array of rows read with `json_each`.
//!
//! SQLite has no array parameters. A multi-row `VALUES` list is SQL text of a new
//! length on every call, parsed and planned each time (diesel caches no
//! `ON CONFLICT DO UPDATE`), and a cached single-row statement costs diesel an AST
//! walk, a cache look-up and a bind per row. A round's rows are instead written as
//! one JSON array of arrays, `[[v0, v1, …], …]`, bound as one text parameter to a
//! fixed statement that reads `value ->> 0`, `value ->> 1`, … `FROM json_each(?)`:
//! SQLite's JSON parser (C, one pass) replaces all of that. Array order is row order.
//!
//! Values are written as SQLite would store them: integers and booleans (0/1) as
//! numbers, text as JSON strings, `None` as `null` (SQL NULL), timestamps as the text
//! diesel stores ([`crate::db::sqlite_time`]).

use std::fmt::Write as _;

/// A JSON array of rows under construction.
#[derive(Debug)]
pub struct JsonRows {
    out: String,
    /// Whether the current row has no value yet.
    row_empty: bool,
    rows: usize,
}

impl Default for JsonRows {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl JsonRows {
    /// An empty array with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut out = String::with_capacity(bytes.max(2));
        out.push('[');
        Self {
            out,
            row_empty: true,
            rows: 0,
        }
    }

    /// Starts a row (the previous one, if any, must have been ended).
    pub fn row(&mut self) -> &mut Self {
        if self.rows > 0 {
            self.out.push(',');
        }
        self.out.push('[');
        self.row_empty = true;
        self.rows += 1;
        self
    }

    /// Ends the current row.
    pub fn end(&mut self) {
        self.out.push(']');
    }

    fn sep(&mut self) {
        if !self.row_empty {
            self.out.push(',');
        }
        self.row_empty = false;
    }

    /// An integer value.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.sep();
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{value}");
        self
    }

    /// A boolean, stored as 0 or 1 (diesel's SQLite `Bool`).
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.sep();
        self.out.push(if value { '1' } else { '0' });
        self
    }

    /// A text value.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.sep();
        push_json_string(&mut self.out, value);
        self
    }

    /// A nullable text value.
    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => {
                self.sep();
                self.out.push_str("null");
                self
            }
        }
    }

    /// Number of rows started.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was started.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The finished JSON text.
    pub fn finish(mut self) -> String {
        self.out.push(']');
        self.out
    }
}

/// Appends `s` as a JSON string (RFC 8259 escapes; everything else verbatim).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_valid_json_with_every_value_kind() {
        let mut rows = JsonRows::default();
        rows.row()
            .text("a\"b\\c\n\u{1}é🦀")
            .int(-42)
            .bool(true)
            .opt_text(None)
            .end();
        rows.row().int(i64::MAX).bool(false).opt_text(Some("x")).end();
        assert_eq!(rows.len(), 2);
        let json = rows.finish();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([
                ["a\"b\\c\n\u{1}é🦀", -42, 1, null],
                [i64::MAX, 0, "x"]
            ])
        );
    }

    #[test]
    fn no_rows_is_an_empty_array() {
        assert_eq!(JsonRows::default().finish(), "[]");
    }
}
