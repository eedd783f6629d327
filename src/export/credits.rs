//! `credits.safetensors`: per-token γ of every exported trace, flat, with token ids and sample
//! ids, in the format an RL stack already reads. Offsets delimit the traces.

use super::Done;
use crate::trace::st_write::{RawTensor, serialize};
use std::collections::BTreeMap;

pub const CREDITS_FORMAT: &str = "flowtracer.credits/1";

pub fn credits_safetensors(done: &[Done], params: &crate::params::Params) -> Result<Vec<u8>, String> {
    let mut credit: Vec<u8> = Vec::new();
    let mut ids: Vec<u8> = Vec::new();
    let mut offsets: Vec<u8> = 0i64.to_le_bytes().to_vec();
    let mut spans: Vec<u8> = Vec::new();
    let mut total = 0i64;
    for d in done {
        for (k, &g) in d.result.credit.iter().enumerate() {
            credit.extend((g as f32).to_le_bytes());
            let id = d.token_ids.as_ref().map_or(-1, |v| v[k]);
            ids.extend(id.to_le_bytes());
        }
        total += d.tokens.len() as i64;
        offsets.extend(total.to_le_bytes());
        for s in [d.spans.question, d.spans.response, d.spans.answer] {
            spans.extend((s.start as i64).to_le_bytes());
            spans.extend((s.end as i64).to_le_bytes());
        }
    }
    let n = done.len();
    let t = total as usize;
    let tensors = [
        RawTensor { name: "credit", dtype: "F32", elem_size: 4, shape: vec![t], data: &credit },
        RawTensor { name: "token_ids", dtype: "I64", elem_size: 8, shape: vec![t], data: &ids },
        RawTensor { name: "offsets", dtype: "I64", elem_size: 8, shape: vec![n + 1], data: &offsets },
        RawTensor { name: "spans", dtype: "I64", elem_size: 8, shape: vec![n, 3, 2], data: &spans },
    ];
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), CREDITS_FORMAT.to_string());
    meta.insert("sources".into(), serde_json::to_string(&done.iter().map(|d| &d.source).collect::<Vec<_>>()).unwrap());
    meta.insert("sample_ids".into(), serde_json::to_string(&done.iter().map(|d| d.sample_id.clone()).collect::<Vec<_>>()).unwrap());
    meta.insert("status".into(), serde_json::to_string(&done.iter().map(|d| d.result.status.name()).collect::<Vec<_>>()).unwrap());
    meta.insert("params".into(), serde_json::to_string(params).unwrap());
    meta.insert("semantics".into(), "gamma: per-token advantage multiplier, A_t = gamma_t * A_seq; spans: [trace, question|response|answer, start|end]".into());
    Ok(serialize(&tensors, &meta))
}
