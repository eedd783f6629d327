//! `credits.safetensors`: per-token γ of every exported trace, flat, with token ids and sample
//! ids, in the format an RL stack already reads. Offsets delimit the traces.

use super::Done;
use crate::params::Params;
use crate::span::Span;
use crate::trace::st_write::{RawTensor, serialize};
use crate::trace::{DataError, Problem, TraceError};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

pub const CREDITS_FORMAT: &str = "flowtracer.credits/1";
/// The export's run-wide file of it, beside its `summary.json`.
pub const CREDITS_FILE: &str = "credits.safetensors";

/// A credits file taken a trace at a time: what it keeps is what the file holds (12 bytes a
/// token and each trace's spans, source, sample id and status), not the traces' results.
#[derive(Default)]
pub struct CreditsFile {
    credit: Vec<u8>,
    ids: Vec<u8>,
    offsets: Vec<u8>,
    spans: Vec<u8>,
    total: i64,
    sources: Vec<String>,
    sample_ids: Vec<Option<String>>,
    status: Vec<&'static str>,
}

impl CreditsFile {
    pub fn add(&mut self, d: &Done) {
        if self.offsets.is_empty() {
            self.offsets.extend(0i64.to_le_bytes());
        }
        for (k, &g) in d.result.credit.iter().enumerate() {
            self.credit.extend((g as f32).to_le_bytes());
            let id = d.token_ids.as_ref().map_or(-1, |v| v[k]);
            self.ids.extend(id.to_le_bytes());
        }
        self.total += d.tokens.len() as i64;
        self.offsets.extend(self.total.to_le_bytes());
        for s in [d.spans.question, d.spans.response, d.spans.answer] {
            self.spans.extend((s.start as i64).to_le_bytes());
            self.spans.extend((s.end as i64).to_le_bytes());
        }
        self.sources.push(d.source.clone());
        self.sample_ids.push(d.sample_id.clone());
        self.status.push(d.result.status.name());
    }

    pub fn bytes(mut self, params: &Params) -> Vec<u8> {
        if self.offsets.is_empty() {
            self.offsets.extend(0i64.to_le_bytes());
        }
        let n = self.sources.len();
        let t = self.total as usize;
        let tensors = [
            RawTensor { name: "credit", dtype: "F32", elem_size: 4, shape: vec![t], data: &self.credit },
            RawTensor { name: "token_ids", dtype: "I64", elem_size: 8, shape: vec![t], data: &self.ids },
            RawTensor { name: "offsets", dtype: "I64", elem_size: 8, shape: vec![n + 1], data: &self.offsets },
            RawTensor { name: "spans", dtype: "I64", elem_size: 8, shape: vec![n, 3, 2], data: &self.spans },
        ];
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), CREDITS_FORMAT.to_string());
        meta.insert("sources".into(), serde_json::to_string(&self.sources).unwrap());
        meta.insert("sample_ids".into(), serde_json::to_string(&self.sample_ids).unwrap());
        meta.insert("status".into(), serde_json::to_string(&self.status).unwrap());
        meta.insert("params".into(), serde_json::to_string(params).unwrap());
        meta.insert("semantics".into(), "gamma: per-token advantage multiplier, A_t = gamma_t * A_seq; spans: [trace, question|response|answer, start|end]".into());
        serialize(&tensors, &meta)
    }
}

/// One trace's part of a credits file.
#[derive(Clone, Debug, PartialEq)]
pub struct CreditRow {
    pub source: String,
    pub sample_id: Option<String>,
    pub status: String,
    /// γ per token.
    pub credit: Vec<f32>,
    /// −1 where the trace had no ids.
    pub token_ids: Vec<i64>,
    pub question: Span,
    pub response: Span,
    pub answer: Span,
}

/// A credits file read back: what an RL trainer (or `flowtracer.read_credits`) consumes.
#[derive(Clone, Debug)]
pub struct Credits {
    pub rows: Vec<CreditRow>,
    pub params: Params,
}

/// Reads and checks a `credits.safetensors` (format `flowtracer.credits/1`); every
/// inconsistency is an error naming the file, and no allocation exceeds the file's own size.
pub fn read_credits(path: &Path) -> Result<Credits, TraceError> {
    let bytes = std::fs::read(path).map_err(|e| TraceError::new(path, Problem::Io, format!("cannot read: {e}")))?;
    parse_credits(&bytes).map_err(|e| e.at(path))
}

fn parse_credits(bytes: &[u8]) -> Result<Credits, DataError> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| crate::trace::not_safetensors(bytes, &e))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| crate::trace::not_safetensors(bytes, &e))?;
    let meta = crate::trace::metadata(&header);
    crate::trace::check_format(meta, CREDITS_FORMAT)?;
    let tensor = |name: &str, dtype: Dtype, axes: usize| -> Result<(Vec<usize>, Vec<u8>), DataError> {
        let t = st.tensor(name).map_err(|_| DataError::new(Problem::Shape, format!("no `{name}` tensor")))?;
        if t.dtype() != dtype || t.shape().len() != axes {
            return Err(DataError::new(Problem::Shape, format!("`{name}` is {:?} {:?}; expected {dtype:?} with {axes} axes", t.dtype(), t.shape())));
        }
        Ok((t.shape().to_vec(), t.data().to_vec()))
    };
    let (t_shape, credit) = tensor("credit", Dtype::F32, 1)?;
    let (ids_shape, ids) = tensor("token_ids", Dtype::I64, 1)?;
    let (off_shape, offsets) = tensor("offsets", Dtype::I64, 1)?;
    let (span_shape, spans) = tensor("spans", Dtype::I64, 3)?;
    let total = t_shape[0];
    let n = off_shape[0].checked_sub(1).ok_or_else(|| DataError::new(Problem::Shape, "`offsets` is empty; it starts with 0"))?;
    if ids_shape[0] != total || span_shape != [n, 3, 2] {
        return Err(DataError::new(Problem::Shape, format!("`token_ids` {ids_shape:?} and `spans` {span_shape:?} do not match {total} tokens in {n} traces")));
    }
    let i64s = |b: &[u8]| b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect::<Vec<_>>();
    let offsets = i64s(&offsets);
    if offsets[0] != 0 || offsets[n] != total as i64 || offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(DataError::new(Problem::Shape, format!("`offsets` must rise from 0 to {total}")));
    }
    let list = |key: &str| -> Result<Vec<Option<String>>, DataError> {
        let text = meta.get(key).ok_or_else(|| DataError::new(Problem::Metadata, format!("metadata has no `{key}`")))?;
        let v: Vec<Option<String>> = serde_json::from_str(text).map_err(|e| DataError::new(Problem::Metadata, format!("metadata `{key}`: {e}")))?;
        if v.len() != n {
            return Err(DataError::new(Problem::Metadata, format!("metadata `{key}` lists {} traces, `offsets` {n}", v.len())));
        }
        Ok(v)
    };
    let (sources, sample_ids, status) = (list("sources")?, list("sample_ids")?, list("status")?);
    let params = match meta.get("params") {
        Some(text) => Params::parse(text, true).map_err(|e| DataError::new(Problem::Metadata, format!("metadata `params`: {e}")))?,
        None => return Err(DataError::new(Problem::Metadata, "metadata has no `params`")),
    };
    let credit: Vec<f32> = credit.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let ids = i64s(&ids);
    let spans = i64s(&spans);
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (offsets[i] as usize, offsets[i + 1] as usize);
        let len = b - a;
        let span = |j: usize| -> Result<Span, DataError> {
            let (s, e) = (spans[i * 6 + j * 2], spans[i * 6 + j * 2 + 1]);
            if s < 0 || e < s || e as usize > len {
                return Err(DataError::new(Problem::Span, format!("trace {i}: span [{s}, {e}) is outside its {len} tokens")));
            }
            Ok(Span::new(s as usize, e as usize))
        };
        rows.push(CreditRow {
            source: sources[i].clone().unwrap_or_default(),
            sample_id: sample_ids[i].clone(),
            status: status[i].clone().unwrap_or_default(),
            credit: credit[a..b].to_vec(),
            token_ids: ids[a..b].to_vec(),
            question: span(0)?,
            response: span(1)?,
            answer: span(2)?,
        });
    }
    Ok(Credits { rows, params })
}
