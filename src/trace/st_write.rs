//! A deterministic safetensors writer. The `safetensors` crate writes `__metadata__` from a
//! HashMap, so two exports of the same input differ byte for byte; CI diffs and caches want
//! identical files, so keys are sorted here. Readers see an ordinary safetensors file.

use std::collections::BTreeMap;

pub struct RawTensor<'a> {
    pub name: &'a str,
    /// safetensors dtype name: "F32", "F16", "BF16", "I64", …
    pub dtype: &'static str,
    pub elem_size: usize,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

pub fn serialize(tensors: &[RawTensor], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    // Widest elements first keeps every tensor aligned to its element size (as the crate does).
    let mut order: Vec<&RawTensor> = tensors.iter().collect();
    order.sort_by(|a, b| b.elem_size.cmp(&a.elem_size).then(a.name.cmp(b.name)));
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialise"));
    }
    let mut offset = 0usize;
    for t in &order {
        debug_assert_eq!(t.data.len(), t.shape.iter().product::<usize>() * t.elem_size, "{}", t.name);
        header.insert(
            t.name.to_string(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.data.len()]}),
        );
        offset += t.data.len();
    }
    // serde_json's Map is a BTreeMap unless `preserve_order` is on: keys come out sorted.
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header)).expect("header serialises");
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend((head.len() as u64).to_le_bytes());
    out.extend(head);
    for t in &order {
        out.extend_from_slice(t.data);
    }
    out
}
