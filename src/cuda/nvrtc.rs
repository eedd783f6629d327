//! NVIDIA's run-time compiler, loaded here rather than through cudarc's binding, which looks only
//! for the NVRTC of the CUDA it was generated for (12 and older): machines now carry CUDA 13's
//! (torch's CUDA 13 wheels bring `libnvrtc.so.13` and nothing else). The seven entry points used
//! here are the same in every NVRTC since 11, so any of them compiles the kernels.
//!
//! Where it is looked for: the paths in `FLOWTRACER_NVRTC` (separated as in `PATH`; the Python package sets
//! it to the NVRTC a pip wheel installed, outside the loader's path), then the loader's search by
//! name, newest first.

use libloading::Library;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Paths to try before the names the loader searches for.
pub const NVRTC_ENV: &str = "FLOWTRACER_NVRTC";

#[cfg(unix)]
const NAMES: [&str; 5] = ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.11.1"];
#[cfg(windows)]
const NAMES: [&str; 3] = ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"];

type Program = *mut c_void;

/// The library and the entry points the kernels' compilation calls.
struct Nvrtc {
    _lib: Library,
    /// Held open for NVRTC to find (see [`builtins_beside`]).
    _builtins: Vec<Library>,
    create: unsafe extern "C" fn(*mut Program, *const c_char, *const c_char, c_int, *const *const c_char, *const *const c_char) -> c_int,
    compile: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int,
    ptx_size: unsafe extern "C" fn(Program, *mut usize) -> c_int,
    ptx: unsafe extern "C" fn(Program, *mut c_char) -> c_int,
    log_size: unsafe extern "C" fn(Program, *mut usize) -> c_int,
    log: unsafe extern "C" fn(Program, *mut c_char) -> c_int,
    destroy: unsafe extern "C" fn(*mut Program) -> c_int,
    error: unsafe extern "C" fn(c_int) -> *const c_char,
}

impl Nvrtc {
    /// # Safety
    /// `lib` must be an NVRTC library: the symbols are taken to have NVRTC's signatures.
    unsafe fn bind(lib: Library) -> Result<Nvrtc, libloading::Error> {
        // SAFETY: each symbol is NVRTC's, with the signature of the field it fills.
        unsafe {
            Ok(Nvrtc {
                create: *lib.get(b"nvrtcCreateProgram")?,
                compile: *lib.get(b"nvrtcCompileProgram")?,
                ptx_size: *lib.get(b"nvrtcGetPTXSize")?,
                ptx: *lib.get(b"nvrtcGetPTX")?,
                log_size: *lib.get(b"nvrtcGetProgramLogSize")?,
                log: *lib.get(b"nvrtcGetProgramLog")?,
                destroy: *lib.get(b"nvrtcDestroyProgram")?,
                error: *lib.get(b"nvrtcGetErrorString")?,
                _lib: lib,
                _builtins: Vec::new(),
            })
        }
    }

    fn check(&self, code: c_int, what: &str) -> Result<(), String> {
        if code == 0 { Ok(()) } else { Err(self.message(code, what)) }
    }

    fn message(&self, code: c_int, what: &str) -> String {
        // SAFETY: NVRTC returns a static string for any result code.
        let name = unsafe { CStr::from_ptr((self.error)(code)) }.to_string_lossy();
        format!("NVRTC {what}: {name}")
    }

    /// A buffer NVRTC fills after saying its size, as text.
    ///
    /// # Safety
    /// `size` and `fill` must be the pair of NVRTC's calls for one thing of the live `prog`.
    unsafe fn text(&self, prog: Program, size: unsafe extern "C" fn(Program, *mut usize) -> c_int, fill: unsafe extern "C" fn(Program, *mut c_char) -> c_int, what: &str) -> Result<String, String> {
        let mut len = 0;
        // SAFETY: the buffer is as long as NVRTC says the text is (the caller's contract).
        unsafe {
            self.check(size(prog, &mut len), what)?;
            let mut buf = vec![0u8; len.max(1)];
            self.check(fill(prog, buf.as_mut_ptr().cast()), what)?;
            Ok(CStr::from_bytes_until_nul(&buf).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
        }
    }
}

/// The process's NVRTC: the first of `FLOWTRACER_NVRTC`'s paths and the names that loads.
fn library() -> Result<&'static Nvrtc, String> {
    static NVRTC: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
    NVRTC
        .get_or_init(|| {
            let paths: Vec<String> = std::env::var_os(NVRTC_ENV)
                .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).map(|p| p.display().to_string()).collect())
                .unwrap_or_default();
            load(paths.iter().map(String::as_str).chain(NAMES))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The first of `candidates` (paths or names) that loads and has NVRTC's entry points; the
/// error lists what was tried and why each failed.
fn load<'a>(candidates: impl Iterator<Item = &'a str>) -> Result<Nvrtc, String> {
    let mut tried = Vec::new();
    for name in candidates {
        // SAFETY: loading a library runs only its initialisers; NVRTC's symbols are bound by name.
        match unsafe { Library::new(name).map(|lib| Nvrtc::bind(lib)) } {
            Ok(Ok(nvrtc)) => return Ok(Nvrtc { _builtins: builtins_beside(name), ..nvrtc }),
            Ok(Err(e)) => tried.push(format!("{name}, which is not NVRTC ({e})")),
            Err(_) => tried.push(name.to_string()),
        }
    }
    Err(format!("NVRTC is not installed or not on the loader's path (tried {}; {NVRTC_ENV} may name it)", tried.join(", ")))
}

/// The compiler's builtins library beside an NVRTC named by its path, loaded. NVRTC opens
/// `libnvrtc-builtins.so.X.Y` by name when it first compiles, and CUDA 13.0's (torch 2.14's
/// `nvidia/cu13/lib`, off the loader's path) does not find the one beside it: "failed to open
/// libnvrtc-builtins.so.13.0", and no CUDA backend. A library the process holds already is
/// found by its name, so it is opened first from where NVRTC lies.
fn builtins_beside(nvrtc: &str) -> Vec<Library> {
    builtins_in(Path::new(nvrtc))
        .into_iter()
        // SAFETY: NVRTC's own builtins library; loading it runs only its initialisers.
        .filter_map(|path| unsafe { Library::new(path) }.ok())
        .collect()
}

/// The builtins libraries in the folder of `nvrtc`, where it is a path (a bare name is the
/// loader's to search, and its builtins too).
fn builtins_in(nvrtc: &Path) -> Vec<PathBuf> {
    const PREFIX: &str = if cfg!(windows) { "nvrtc-builtins64_" } else { "libnvrtc-builtins.so." };
    let Some(dir) = nvrtc.parent().filter(|d| !d.as_os_str().is_empty()) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PREFIX))).collect();
    found.sort();
    found
}

/// Whether an NVRTC loads, or why none does.
pub fn loads() -> Result<(), String> {
    library().map(|_| ())
}

/// Compiles CUDA C `source` to PTX; a compile error carries NVRTC's log.
pub fn compile(source: &str, name: &str) -> Result<String, String> {
    let nv = library()?;
    let (src, name) = (CString::new(source).map_err(|e| e.to_string())?, CString::new(name).map_err(|e| e.to_string())?);
    let mut prog: Program = std::ptr::null_mut();
    // SAFETY: NVRTC's documented calls on one program, created first and destroyed last.
    unsafe {
        nv.check((nv.create)(&mut prog, src.as_ptr(), name.as_ptr(), 0, std::ptr::null(), std::ptr::null()), "could not create the program")?;
        let compiled = (nv.compile)(prog, 0, std::ptr::null());
        let out = if compiled == 0 {
            nv.text(prog, nv.ptx_size, nv.ptx, "could not read the PTX")
        } else {
            let log = nv.text(prog, nv.log_size, nv.log, "could not read the log").unwrap_or_default();
            Err(format!("{}:\n{log}", nv.message(compiled, "compilation failed")))
        };
        (nv.destroy)(&mut prog);
        out
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_builtins_beside_a_named_nvrtc_are_found_and_a_bare_name_has_none() {
        let dir = std::env::temp_dir().join(format!("ft-nvrtc-builtins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["libnvrtc.so.13", "libnvrtc.alt.so.13", "libnvrtc-builtins.so.13.0", "libnvrtc-builtins.alt.so.13.0"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        assert_eq!(super::builtins_in(&dir.join("libnvrtc.so.13")), [dir.join("libnvrtc-builtins.so.13.0")]);
        assert!(super::builtins_in(std::path::Path::new("libnvrtc.so.13")).is_empty());
        // Files that are not libraries are passed over, not an error.
        assert!(super::builtins_beside(dir.join("libnvrtc.so.13").to_str().unwrap()).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_library_that_is_not_nvrtc_is_passed_over_and_named() {
        let e = super::load(["libnvrtc-not-here.so", "libc.so.6"].into_iter()).err().expect("neither is NVRTC");
        assert!(e.contains("libnvrtc-not-here.so, libc.so.6, which is not NVRTC"), "{e}");
    }
}
