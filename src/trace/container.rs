//! Why a file is not a safetensors container, in words that name the tensor, the field and the
//! numbers where the `safetensors` crate gives a JSON column or says only that some tensor
//! disagrees.

use super::{DataError, Problem};
use std::collections::{BTreeMap, HashMap};

/// Why `bytes` are not a safetensors file, as `safetensors` found it, in words.
pub(crate) fn not_safetensors(bytes: &[u8], e: &safetensors::SafeTensorError) -> DataError {
    let why = match e {
        safetensors::SafeTensorError::TensorInvalidInfo => disagreeing_tensor(bytes),
        safetensors::SafeTensorError::InvalidHeaderDeserialization(_) => malformed_entry(bytes),
        _ => None,
    };
    let why = why.or_else(|| other_format(bytes)).unwrap_or_else(|| describe(e));
    DataError::new(Problem::Container, format!("not a valid safetensors file: {why}"))
}

/// The header's `__metadata__` where the header holds it (none: an empty map): not copied, since
/// a trace's tokens are most of it and the copy had been a sixth of opening a 1k-token trace.
pub(crate) fn metadata(header: &safetensors::tensor::Metadata) -> &HashMap<String, String> {
    static NONE: std::sync::LazyLock<HashMap<String, String>> = std::sync::LazyLock::new(HashMap::new);
    header.metadata().as_ref().unwrap_or(&NONE)
}

/// What a file that does not begin as safetensors does begin as, where it is a format a trace is
/// often mistaken for (attention saved with `torch.save` or `np.save`, a picture of the export)
/// or text: said instead of "header length is implausibly large", which its first eight bytes,
/// read as a length, mostly give.
fn other_format(bytes: &[u8]) -> Option<String> {
    const KNOWN: [(&[u8], &str); 5] = [
        (b"\x93NUMPY", "a NumPy .npy array"),
        (b"PK\x03\x04", "a zip archive (torch.save's .pt, or NumPy's .npz)"),
        (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
        (b"\x89PNG\r\n\x1a\n", "a PNG picture"),
        (b"%PDF", "a PDF document"),
    ];
    // A safetensors file's header starts after its eight bytes of length: one that does (a
    // truncated trace, whose length can read as any of the bytes below) is not guessed at.
    if bytes.get(8) == Some(&b'{') {
        return None;
    }
    let safetensors = "; trace files are safetensors as `flowtracer.dump` writes them (the README's trace format v1)";
    if let Some((_, what)) = KNOWN.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(format!("it is {what}{safetensors}"));
    }
    // A pickle of protocol 2 to 5: `pickle.dump`, or torch.save's legacy format.
    if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        return Some(format!("it is a Python pickle (pickle.dump, or torch.save's legacy format){safetensors}"));
    }
    // Text: a safetensors header's length is eight bytes whose high ones are zero.
    let head = &bytes[..bytes.len().min(64)];
    let text = String::from_utf8_lossy(head);
    let printable = |c: char| !c.is_control() || c.is_whitespace();
    (head.len() >= 8 && head[..8].iter().all(|b| !b.is_ascii_control() || b.is_ascii_whitespace()) && text.chars().all(printable)).then(|| {
        let start: String = text.lines().next().unwrap_or("").chars().take(40).collect();
        format!("it is text (it begins `{start}`){safetensors}")
    })
}

/// The header's entries (read again where `safetensors` refused them: its length is within the
/// file, so this is bounded by it), or None where they are not a JSON object.
fn header_entries(bytes: &[u8]) -> Option<BTreeMap<String, serde_json::Value>> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    serde_json::from_slice(bytes.get(8..8usize.checked_add(len)?)?).ok()
}

/// The header entry that is not what safetensors expects, named (the crate's error gives a line
/// and column in the JSON): a tensor's `dtype`, `shape` or `data_offsets`, or `__metadata__`
/// holding other than strings.
fn malformed_entry(bytes: &[u8]) -> Option<String> {
    header_entries(bytes)?.into_iter().find_map(|(name, entry)| {
        if name == "__metadata__" {
            let e = serde_json::from_value::<HashMap<String, String>>(entry).err()?;
            return Some(format!("`__metadata__` must map names to strings: {e}"));
        }
        let Some(fields) = entry.as_object() else {
            return Some(format!("tensor `{name}` is {}, not an object of dtype, shape and data_offsets", shown(&entry)));
        };
        fn wrong<T: serde::de::DeserializeOwned>(fields: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
            let value = fields.get(key).cloned().unwrap_or_default();
            let e = serde_json::from_value::<T>(value.clone()).err()?;
            Some(format!("`{key}` is {}: {e}", shown(&value)))
        }
        let e = wrong::<safetensors::Dtype>(fields, "dtype")
            .or_else(|| wrong::<Vec<usize>>(fields, "shape"))
            .or_else(|| wrong::<(usize, usize)>(fields, "data_offsets"))
            .or_else(|| serde_json::from_value::<safetensors::tensor::TensorInfo>(entry.clone()).err().map(|e| e.to_string()))?;
        Some(format!("tensor `{name}`: {e}"))
    })
}

/// A JSON value as the header has it, cut short where it is long.
fn shown(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// The tensor whose byte range disagrees with its shape and dtype, with the numbers, where
/// `safetensors` only says that one does.
fn disagreeing_tensor(bytes: &[u8]) -> Option<String> {
    header_entries(bytes)?.into_iter().filter(|(name, _)| name != "__metadata__").find_map(|(name, info)| {
        let info: safetensors::tensor::TensorInfo = serde_json::from_value(info).ok()?;
        let (start, end) = info.data_offsets;
        let need = info.shape.iter().try_fold(info.dtype.bitsize(), |bits, &d| bits.checked_mul(d)).map(|bits| bits / 8);
        (need != end.checked_sub(start)).then(|| {
            let need = need.map_or("more than usize".into(), |b| format!("{b} bytes"));
            format!("tensor `{name}`: shape {:?} in {:?} is {need}, but its data_offsets [{start}, {end}] hold {}", info.shape, info.dtype, end.saturating_sub(start))
        })
    })
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "shorter than the 8-byte header length (truncated?)".into(),
        E::InvalidHeaderLength => "header length points past the end of the file (truncated?)".into(),
        E::MetadataIncompleteBuffer => {
            "tensor data does not match the file size (truncated or padded file)".into()
        }
        E::HeaderTooLarge => "header length is implausibly large".into(),
        E::InvalidHeader(_) => "header is not UTF-8".into(),
        E::InvalidHeaderDeserialization(e) => format!("header is not valid JSON: {e}"),
        E::TensorInvalidInfo => "a tensor's byte range disagrees with its shape and dtype".into(),
        E::InvalidOffset(name) => format!("tensor `{name}` has overlapping or out-of-order offsets"),
        E::ValidationOverflow => "a tensor's shape overflows".into(),
        other => format!("{other:?}"),
    }
}
