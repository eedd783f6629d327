//! Attention handed over from Python, read where it lies. A C-contiguous NumPy array of float32
//! or float16 (or of 16-bit integers carrying bfloat16, as the Python layer passes torch's bf16
//! and ml_dtypes' bfloat16) becomes the trace's storage without a copy; the array object is held
//! until the trace is dropped.

use flowtracer::trace::{ArrayInput, Dtype, Storage};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;

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

/// The engine's view of `array`: its dtype (`bf16` says that 16-bit integers carry bfloat16),
/// shape and bytes, in place. `name` is what errors call the array.
pub fn borrow(array: &Bound<'_, PyUntypedArray>, bf16: bool, name: &str) -> PyResult<ArrayInput> {
    let descr = array.dtype();
    if descr.is_native_byteorder() == Some(false) {
        return Err(value_error(format!("{name}: dtype {descr} is not in the machine's byte order")));
    }
    let dtype = match (descr.kind(), descr.itemsize(), bf16) {
        (b'i' | b'u', 2, true) => Dtype::BF16,
        (b'f', 4, false) => Dtype::F32,
        (b'f', 2, false) => Dtype::F16,
        _ => return Err(value_error(format!("{name}: dtype {descr} is not float32, float16 or bfloat16"))),
    };
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
    let items = tokens.try_iter().map_err(|_| value_error(format!("{name}: tokens must be a sequence of strings")))?;
    let out = items.map(|t| Ok(t?.str()?.to_str()?.to_owned())).collect::<PyResult<Vec<String>>>()?;
    Ok((out, ResultTokens::Trace))
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
