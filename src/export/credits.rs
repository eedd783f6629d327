//! `credits.safetensors`: per-token γ of every exported trace, flat, with token ids and sample
//! ids, in the format an RL stack already reads. Offsets delimit the traces.

use super::Done;
use safetensors::tensor::TensorView;
use std::collections::HashMap;

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
    let views = vec![
        ("credit", TensorView::new(safetensors::Dtype::F32, vec![t], &credit).map_err(|e| e.to_string())?),
        ("token_ids", TensorView::new(safetensors::Dtype::I64, vec![t], &ids).map_err(|e| e.to_string())?),
        ("offsets", TensorView::new(safetensors::Dtype::I64, vec![n + 1], &offsets).map_err(|e| e.to_string())?),
        ("spans", TensorView::new(safetensors::Dtype::I64, vec![n, 3, 2], &spans).map_err(|e| e.to_string())?),
    ];
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), CREDITS_FORMAT.to_string());
    meta.insert("sources".into(), serde_json::to_string(&done.iter().map(|d| &d.source).collect::<Vec<_>>()).unwrap());
    meta.insert("sample_ids".into(), serde_json::to_string(&done.iter().map(|d| d.sample_id.clone()).collect::<Vec<_>>()).unwrap());
    meta.insert("status".into(), serde_json::to_string(&done.iter().map(|d| d.result.status.name()).collect::<Vec<_>>()).unwrap());
    meta.insert("params".into(), serde_json::to_string(params).unwrap());
    meta.insert("semantics".into(), "gamma: per-token advantage multiplier, A_t = gamma_t * A_seq; spans: [trace, question|response|answer, start|end]".into());
    safetensors::serialize(views, Some(meta)).map_err(|e| format!("cannot write credits.safetensors: {e}"))
}
