//! Writing trace format v1: the synthetic generator and the RL loop produce the same files a
//! PyTorch dumper would, so everything downstream is exercised on one path.

use super::{Dtype, FORMAT, f32_to_bf16, f32_to_f16};
use crate::span::Span;
use super::st_write::{RawTensor, serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Attention given as f32 values of shape `[L,H,N,N]`, `[L,N,N]` or `[N,N]`, stored as `dtype`.
pub struct AttentionInput {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    pub dtype: Dtype,
}

pub struct TraceBuilder {
    tokens: Vec<String>,
    attention: AttentionInput,
    token_ids: Option<Vec<i64>>,
    entropy: Option<Vec<f32>>,
    logprob: Option<Vec<f32>>,
    causal_effect: Option<Vec<f32>>,
    meta: BTreeMap<String, String>,
}

impl TraceBuilder {
    pub fn new(tokens: Vec<String>, question: Span, response: Span, answer: Span, attention: AttentionInput) -> Self {
        let mut meta = BTreeMap::new();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("tokens".into(), serde_json::to_string(&tokens).expect("strings serialise"));
        meta.insert("question".into(), question.to_string());
        meta.insert("response".into(), response.to_string());
        meta.insert("answer".into(), answer.to_string());
        TraceBuilder { tokens, attention, token_ids: None, entropy: None, logprob: None, causal_effect: None, meta }
    }

    /// Other token texts, as many as there were (tests of how tokens are shown).
    pub fn set_tokens(&mut self, tokens: Vec<String>) {
        assert_eq!(tokens.len(), self.tokens.len(), "a trace keeps its length");
        self.meta.insert("tokens".into(), serde_json::to_string(&tokens).expect("strings serialise"));
        self.tokens = tokens;
    }

    pub fn token_ids(mut self, ids: Vec<i64>) -> Self {
        self.token_ids = Some(ids);
        self
    }

    pub fn entropy(mut self, e: Vec<f32>) -> Self {
        self.entropy = Some(e);
        self
    }

    pub fn logprob(mut self, l: Vec<f32>) -> Self {
        self.logprob = Some(l);
        self
    }

    /// Per-token effect of hiding that token on the answer (the per-token probe writes it).
    pub fn causal_effect(mut self, c: Vec<f32>) -> Self {
        self.causal_effect = Some(c);
        self
    }

    /// Sets any metadata key, the required ones included (tests use this to write bad files).
    pub fn meta(mut self, key: &str, value: impl ToString) -> Self {
        self.meta.insert(key.into(), value.to_string());
        self
    }

    pub fn n(&self) -> usize {
        self.tokens.len()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let a = &self.attention;
        let (dtype, attn): (&'static str, Vec<u8>) = match a.dtype {
            Dtype::F32 => ("F32", a.values.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Dtype::F16 => ("F16", a.values.iter().flat_map(|&x| f32_to_f16(x).to_le_bytes()).collect()),
            Dtype::BF16 => ("BF16", a.values.iter().flat_map(|&x| f32_to_bf16(x).to_le_bytes()).collect()),
        };
        let ids: Option<Vec<u8>> = self.token_ids.as_ref().map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect());
        let f32_bytes = |v: &Option<Vec<f32>>| -> Option<Vec<u8>> { v.as_ref().map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()) };
        let (entropy, logprob, causal) = (f32_bytes(&self.entropy), f32_bytes(&self.logprob), f32_bytes(&self.causal_effect));
        let mut tensors = vec![RawTensor { name: "attention", dtype, elem_size: a.dtype.size(), shape: a.shape.clone(), data: &attn }];
        if let Some(b) = &ids {
            tensors.push(RawTensor { name: "token_ids", dtype: "I64", elem_size: 8, shape: vec![b.len() / 8], data: b });
        }
        for (name, v) in [("token_entropy", &entropy), ("token_logprob", &logprob), ("causal_effect", &causal)] {
            if let Some(b) = v {
                tensors.push(RawTensor { name, dtype: "F32", elem_size: 4, shape: vec![b.len() / 4], data: b });
            }
        }
        serialize(&tensors, &self.meta)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::atomic::write_atomic(path, &self.to_bytes())
    }
}
