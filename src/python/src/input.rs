//! Attention handed over from Python, read where it lies. A C-contiguous NumPy array of float32
//! or float16 (or of 16-bit integers carrying bfloat16, as the Python layer passes torch's bf16
//! and ml_dtypes' bfloat16) becomes the trace's storage without a copy; so does an array in CUDA
//! device memory (anything with `__cuda_array_interface__`: a torch tensor on the GPU, CuPy,
//! Numba), which the CUDA backend then reads on the device. The array object is held until the
//! trace is dropped.

use flowtracer::trace::{ArrayInput, Dtype, Storage};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::output::ResultTokens;
use crate::value_error;

/// The array's bytes, kept alive by a reference to the array.
struct ArrayBytes {
    _owner: Py<PyUntypedArray>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the pointer is into the data of the array `_owner` keeps alive, and the engine only
// reads it. The Python API documents that an array must not be written while it is analysed
// (the same contract as any zero-copy reader, e.g. polars' `from_numpy`).
unsafe impl Send for ArrayBytes {}
unsafe impl Sync for ArrayBytes {}

impl AsRef<[u8]> for ArrayBytes {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr..ptr+len` is the array's C-contiguous data (checked in `borrow`), alive
        // while `_owner` is.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The engine's view of `array`, a NumPy array or a CUDA one: its dtype (`bf16` says that 16-bit
/// integers carry bfloat16), shape and bytes, in place. `name` is what errors call the array.
pub fn borrow(array: &Bound<'_, PyAny>, bf16: bool, name: &str) -> PyResult<ArrayInput> {
    if let Ok(host) = array.cast::<PyUntypedArray>() {
        return borrow_host(host, bf16, name);
    }
    match array.getattr(pyo3::intern!(array.py(), "__cuda_array_interface__")) {
        Ok(interface) => borrow_device(array, &interface, bf16, name),
        Err(_) => Err(value_error(format!("{name}: not a NumPy array or an array in CUDA memory (got {})", array.get_type().name()?))),
    }
}

/// The engine's dtype of an array's element kind and size.
fn dtype_of(kind: u8, size: usize, bf16: bool, shown: impl std::fmt::Display, name: &str) -> PyResult<Dtype> {
    match (kind, size, bf16) {
        (b'i' | b'u', 2, true) => Ok(Dtype::BF16),
        (b'f', 4, false) => Ok(Dtype::F32),
        (b'f', 2, false) => Ok(Dtype::F16),
        _ => Err(value_error(format!("{name}: dtype {shown} is not float32, float16 or bfloat16"))),
    }
}

fn borrow_host(array: &Bound<'_, PyUntypedArray>, bf16: bool, name: &str) -> PyResult<ArrayInput> {
    let descr = array.dtype();
    if descr.is_native_byteorder() == Some(false) {
        return Err(value_error(format!("{name}: dtype {descr} is not in the machine's byte order")));
    }
    let dtype = dtype_of(descr.kind(), descr.itemsize(), bf16, &descr, name)?;
    if !array.is_c_contiguous() {
        return Err(value_error(format!("{name}: the array is not C-contiguous")));
    }
    let shape = array.shape().to_vec();
    let len = shape.iter().product::<usize>() * dtype.size();
    // SAFETY: reading the data pointer of a live array object.
    let ptr = unsafe { (*array.as_array_ptr()).fields.data as *const u8 };
    let owner = array.clone().unbind();
    Ok(ArrayInput { bytes: Storage::Borrowed(Box::new(ArrayBytes { _owner: owner, ptr, len })), dtype, shape })
}

/// An array in CUDA memory, described by its `__cuda_array_interface__` (version 2 or 3): its
/// pointer, checked to be memory of the engine's device, becomes the trace's storage, and the
/// producer's stream is waited for.
fn borrow_device(array: &Bound<'_, PyAny>, interface: &Bound<'_, PyAny>, bf16: bool, name: &str) -> PyResult<ArrayInput> {
    let bad = |what: String| value_error(format!("{name}: __cuda_array_interface__ {what}"));
    let d = interface.cast::<PyDict>().map_err(|_| bad("is not a dict".into()))?;
    let item = |key: &str| d.get_item(key)?.ok_or_else(|| bad(format!("has no `{key}`")));
    let typestr: String = item("typestr")?.extract().map_err(|_| bad("`typestr` is not a str".into()))?;
    let (order, kind, size) = match typestr.as_bytes() {
        [order, kind, digits @ ..] => (*order, *kind, std::str::from_utf8(digits).ok().and_then(|t| t.parse::<usize>().ok()).unwrap_or(0)),
        _ => (0, 0, 0),
    };
    if order == b'>' {
        return Err(value_error(format!("{name}: dtype {typestr} is not in the machine's byte order")));
    }
    let dtype = dtype_of(kind, size, bf16, &typestr, name)?;
    let shape: Vec<usize> = item("shape")?.extract().map_err(|_| bad("`shape` is not a tuple of sizes".into()))?;
    // C-contiguous: no strides, or exactly a row-major array's.
    if let Some(strides) = d.get_item("strides")?.filter(|s| !s.is_none()) {
        let strides: Vec<isize> = strides.extract().map_err(|_| bad("`strides` is not a tuple of ints".into()))?;
        let mut want = vec![0isize; shape.len()];
        let mut step = dtype.size() as isize;
        for (w, &dim) in want.iter_mut().zip(&shape).rev() {
            *w = step;
            step *= dim as isize;
        }
        let matters = |(i, (&s, &w)): (usize, (&isize, &isize))| shape[i] > 1 && s != w;
        if strides.len() != shape.len() || strides.iter().zip(&want).enumerate().any(matters) {
            return Err(value_error(format!("{name}: the array is not C-contiguous")));
        }
    }
    if d.get_item("mask")?.is_some_and(|m| !m.is_none()) {
        return Err(value_error(format!("{name}: a masked array cannot be attention")));
    }
    let (ptr, _read_only): (u64, bool) = item("data")?.extract().map_err(|_| bad("`data` is not (pointer, read_only)".into()))?;
    let stream: Option<u64> = d.get_item("stream")?.map(|s| s.extract()).transpose().map_err(|_| bad("`stream` is not an int or None".into()))?.flatten();
    let len = shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    device_input(array, ptr, len, stream, dtype, shape, name)
}

#[cfg(feature = "cuda")]
fn device_input(array: &Bound<'_, PyAny>, ptr: u64, len: usize, stream: Option<u64>, dtype: Dtype, shape: Vec<usize>, name: &str) -> PyResult<ArrayInput> {
    /// The array object, held for as long as the engine may read its memory.
    struct Owner(#[allow(dead_code)] Py<PyAny>);
    let owner = Box::new(Owner(array.clone().unbind()));
    // Without the GIL: waiting for the producer's stream can mean waiting for a forward pass.
    // SAFETY: the interface's pointer and size describe the array `owner` keeps alive; the API
    // documents that it must not be written while it is analysed.
    let bytes = array.py().detach(|| unsafe { flowtracer::cuda::DeviceBytes::new(ptr, len, stream, owner) }).map_err(|e| value_error(format!("{name}: {e}")))?;
    Ok(ArrayInput { bytes: Storage::Device(bytes), dtype, shape })
}

#[cfg(not(feature = "cuda"))]
fn device_input(_: &Bound<'_, PyAny>, _: u64, _: usize, _: Option<u64>, _: Dtype, _: Vec<usize>, name: &str) -> PyResult<ArrayInput> {
    Err(value_error(format!("{name}: the array is in CUDA memory and this build of the engine has no CUDA backend; copy it to the host first")))
}

/// A trace's tokens as the engine holds them, and where the result's come from.
///
/// The engine only counts an array's tokens (its checks compare the count with the attention's
/// N; no step reads their text). So a list of str is not copied into the engine: its tokens stay
/// blank there and the result hands the caller's list back, the list itself (copying 64 × 1024
/// strings into the engine had been a third of what the binding added to a batch, and a private
/// copy of the list in the result, then dropping it, two fifths of what remained). No tokens
/// (`None`) are `n` blanks, numbered only if the result's are read. Anything else is read item by
/// item, each item's `str()` becoming the token.
pub fn strings(tokens: &Bound<'_, PyAny>, n: usize, name: &str) -> PyResult<(Vec<String>, ResultTokens)> {
    let blank = |len: usize| std::iter::repeat_with(String::new).take(len).collect();
    if tokens.is_none() {
        return Ok((blank(n), ResultTokens::Numbered));
    }
    if let Ok(list) = tokens.cast_exact::<PyList>()
        && all_exact_str(list)
    {
        return Ok((blank(list.len()), ResultTokens::Given(list.clone().unbind())));
    }
    Ok((token_texts(tokens, name)?, ResultTokens::Trace))
}

/// The tokens' texts, item by item (`dump`'s, and an analysis' given other than as a list of
/// str): a `str` as it is; `bytes` (tiktoken's pieces) spelled in byte-level BPE's alphabet, so
/// that the app and the export join a character split across tokens (its `str()` had been
/// `"b'...'"`); anything else its `str()`. A token that is not text (a lone surrogate) is named.
pub fn token_texts(tokens: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if tokens.is_instance_of::<PyString>() || tokens.is_instance_of::<PyBytes>() {
        // (a str is a sequence of str: its characters would be taken for the tokens)
        return Err(pyo3::exceptions::PyTypeError::new_err(format!("{name}: tokens: a sequence of the N tokens' strings, not one {}", tokens.get_type().name()?)));
    }
    let items = tokens.try_iter().map_err(|_| value_error(format!("{name}: tokens must be a sequence of strings")))?;
    items
        .enumerate()
        .map(|(i, t)| {
            let t = t?;
            if let Ok(b) = t.cast::<PyBytes>() {
                return Ok(flowtracer::subword::byte_level(b.as_bytes()));
            }
            let text = t.str()?;
            text.to_str().map(str::to_owned).map_err(|e| value_error(format!("{name}: tokens[{i}] is not text that UTF-8 can hold ({e})")))
        })
        .collect()
}

/// Whether every item of `list` is exactly a `str`: read in place, as borrowed references (the
/// list's iterator takes and drops a reference per item, which on 64 lists of 1024 tokens was a
/// tenth of what the binding added to a batch).
fn all_exact_str(list: &Bound<'_, PyList>) -> bool {
    let len = list.len();
    (0..len).all(|i| {
        // SAFETY: `i` is below the length of a list we hold a reference to, and nothing runs
        // between the calls that could shrink it (no Python code, the GIL held); the item is a
        // borrowed reference, only its type is read.
        unsafe {
            let item = pyo3::ffi::PyList_GetItem(list.as_ptr(), i as pyo3::ffi::Py_ssize_t);
            !item.is_null() && pyo3::ffi::PyUnicode_CheckExact(item) != 0
        }
    })
}
