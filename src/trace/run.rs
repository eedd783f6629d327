//! A run: a folder of traces at any depth (`step_000100/sample_0007.safetensors`), with an
//! optional `run.json` and `metrics.jsonl` beside them.

use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Run {
    pub root: PathBuf,
    /// Trace files, sorted by path so exports and tables are deterministic.
    pub traces: Vec<PathBuf>,
    pub info: Option<serde_json::Value>,
    /// One JSON object per line of `metrics.jsonl`, in file order.
    pub metrics: Vec<serde_json::Value>,
    /// Problems with `run.json` / `metrics.jsonl`: reported, never fatal to the traces.
    pub warnings: Vec<String>,
    /// Subfolders that could not be read, and why: traces there were not found (the export counts
    /// each as a failure).
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Run {
    pub fn name(&self) -> String {
        self.info
            .as_ref()
            .and_then(|i| i.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| self.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    }

    /// Path of a trace relative to the run root, for mirroring the layout in an export.
    pub fn relative<'a>(&self, trace: &'a Path) -> &'a Path {
        trace.strip_prefix(&self.root).unwrap_or(trace)
    }
}

/// The folder of a training run that holds policy checkpoints, not traces.
pub const CHECKPOINTS: &str = "ckpt";

pub fn is_trace_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
        && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Lists a run folder. Only an unreadable root is an error; everything else becomes a warning.
pub fn discover(root: &Path) -> Result<Run, String> {
    discover_except(root, None)
}

/// Whether a safetensors file is an export's credits file (its header's `format`, which the
/// file's first bytes hold), not a trace.
fn is_credits_file(path: &Path) -> bool {
    use std::io::Read;
    let format = format!("\"{}\"", crate::export::credits::CREDITS_FORMAT);
    let mut head = [0u8; 96];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    head[..n].windows(format.len()).any(|w| w == format.as_bytes())
}

/// Whether a folder holds an export's output (its `summary.json`): never traces to read back.
pub fn is_export_output(dir: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 64];
    let n = std::fs::File::open(dir.join("summary.json")).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    String::from_utf8_lossy(&head[..n]).contains("\"flowtracer.summary/")
}

/// Why a folder given as input has no traces to read (after its path): an export's output
/// holds none by design, and says where to look instead.
pub fn why_no_traces(dir: &Path) -> &'static str {
    if is_export_output(dir) {
        "an export's output (its summary.json), which holds no traces: export the traces or run folder it was made from"
    } else {
        "no trace files (*.safetensors) in this folder"
    }
}

/// [`discover`], passing over `skip` (the export's own output folder) and every folder that holds
/// an export's output.
pub fn discover_except(root: &Path, skip: Option<&Path>) -> Result<Run, String> {
    let skip = skip.and_then(|s| s.canonicalize().ok());
    let mut run = Run { root: root.to_path_buf(), ..Default::default() };
    // Symbolic links to folders are followed, each folder once (a link to an ancestor is no loop).
    let mut visited: std::collections::HashSet<PathBuf> = root.canonicalize().into_iter().collect();
    let mut stack = vec![root.to_path_buf()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if first => return Err(format!("{}: cannot read run folder: {e}", dir.display())),
            Err(e) => {
                run.warnings.push(format!("{}: cannot read folder: {e}", dir.display()));
                run.unreadable.push((dir.clone(), format!("{}: cannot read folder: {e}", dir.display())));
                continue;
            }
        };
        first = false;
        // A folder exported into itself (`--export D D`) holds the export's credits file beside
        // the traces: its output, not a trace (read as one, every later export of D failed on it).
        // A trace of that name, which the export left alone, stays a trace.
        let exported_here = is_export_output(&dir);
        for entry in entries.flatten() {
            let path = entry.path();
            let kind = match std::fs::metadata(&path) {
                Ok(m) => m.file_type(),
                // A link to nothing, or to itself: a trace-named one is tried (and fails by name);
                // anything else is said, and holds no trace.
                Err(e) if !is_trace_file(&path) => {
                    run.warnings.push(format!("{}: {e}", path.display()));
                    continue;
                }
                Err(_) => {
                    run.traces.push(path);
                    continue;
                }
            };
            if kind.is_dir() && !path.canonicalize().is_ok_and(|c| visited.insert(c)) {
                continue;
            }
            if kind.is_dir() {
                // Hidden folders and `ckpt/` (policy checkpoints of a training run) hold no traces.
                let name = entry.file_name().to_string_lossy().into_owned();
                let skipped = skip.as_ref().is_some_and(|s| path.canonicalize().is_ok_and(|p| &p == s)) || is_export_output(&path);
                if !name.starts_with('.') && name != CHECKPOINTS && !skipped {
                    stack.push(path);
                }
            } else if is_trace_file(&path) && !(exported_here && is_credits_file(&path)) {
                run.traces.push(path);
            }
        }
    }
    run.traces.sort();

    let info_path = root.join("run.json");
    if info_path.exists() {
        match std::fs::read_to_string(&info_path).map_err(|e| e.to_string()).and_then(|t| {
            serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string())
        }) {
            Ok(v) => run.info = Some(v),
            Err(e) => run.warnings.push(format!("{}: {e}", info_path.display())),
        }
    }
    let metrics_path = root.join("metrics.jsonl");
    if metrics_path.exists() {
        match std::fs::read(&metrics_path) {
            Ok(bytes) => run.metrics = parse_metrics(&bytes, &metrics_path, &mut run.warnings),
            Err(e) => run.warnings.push(format!("{}: {e}", metrics_path.display())),
        }
    }
    Ok(run)
}

/// Parses `metrics.jsonl`, skipping (and reporting) lines that are not JSON objects, such as the
/// half-written last line of a run that was killed, or a line that is not UTF-8: one bad line
/// costs only itself.
pub fn parse_metrics(bytes: &[u8], path: &Path, warnings: &mut Vec<String>) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(raw) else {
            warnings.push(format!("{}:{}: not UTF-8 text", path.display(), i + 1));
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => out.push(v),
            Ok(_) => warnings.push(format!("{}:{}: not a JSON object", path.display(), i + 1)),
            Err(e) => warnings.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    out
}
