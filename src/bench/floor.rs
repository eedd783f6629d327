//! What this machine allows, measured in the bench's own run with the pipeline's threads: a
//! plain read of the mapped trace file (the read floor) and first writes to fresh memory (the
//! first-touch floor). Every step's figure is a ratio to these, not an absolute time.

use super::median;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The wrapping sum of a byte slice as u64 words, in 1 MiB blocks on the rayon pool: the plain
/// read the floor is made of.
fn sum_words(bytes: &[u8]) -> u64 {
    let sum = |block: &[u8]| -> u64 {
        // SAFETY: every bit pattern is a valid u64; align_to only reinterprets the aligned middle.
        let (head, words, tail) = unsafe { block.align_to::<u64>() };
        let bytes = head.iter().chain(tail).fold(0u64, |a, &b| a.wrapping_add(b as u64));
        // Eight lanes, so the adds vectorise and do not wait on one another.
        let mut lanes = [0u64; 8];
        for chunk in words.chunks_exact(8) {
            for (l, &w) in lanes.iter_mut().zip(chunk) {
                *l = l.wrapping_add(w);
            }
        }
        let rest = words.chunks_exact(8).remainder().iter().fold(0u64, |a, &w| a.wrapping_add(w));
        lanes.iter().fold(bytes.wrapping_add(rest), |a, &l| a.wrapping_add(l))
    };
    bytes.par_chunks(1 << 20).map(sum).reduce(|| 0, u64::wrapping_add)
}

/// Fresh memory of `bytes` from the allocator (zeroed, so mapped anew as a large matrix is) and
/// written once in 1 MiB blocks on the rayon pool: the kernel's page faults and zeroing, which a
/// fresh matrix costs the aggregation on top of reading the attention, and which no kernel of
/// ours can skip (`MADV_POPULATE_WRITE` and 2 MiB pages were measured no faster on this
/// machine). Bytes/s, the median of `repeat`.
pub fn first_touch_floor(bytes: usize, repeat: usize) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let mut fresh = vec![0u64; bytes.div_ceil(8)];
        fresh.par_chunks_mut(1 << 17).for_each(|block| block.iter_mut().enumerate().for_each(|(i, w)| *w = i as u64));
        std::hint::black_box(&fresh);
        rates.push(bytes as f64 / t.elapsed().as_secs_f64().max(1e-9));
    }
    median(rates)
}

/// A plain sum over a mapped file, in 1 MiB blocks on the rayon pool the pipeline uses: how fast
/// this machine reads those bytes from the page cache (the file was just read, so it is there)
/// through a new mapping, as the pipeline reads a trace; bytes/s, the median of `repeat`.
pub fn read_floor(path: &Path, repeat: usize) -> Result<f64, String> {
    files_read_floor(&[path.to_path_buf()], repeat)
}

/// The read floor over files read together (one small file is read too fast to time), taken on
/// the pool's threads as a batch takes its traces; each mapped afresh, as the loader maps a
/// trace, so the page faults are part of the floor. Bytes/s, the median of `repeat`. The clock
/// covers what it covers for the pipeline: the files are opened and mapped before it starts
/// (the pipeline is handed traces already open) and unmapped after it stops (the traces are
/// dropped after the batch is timed). Timing the open and the unmap too had cost a 4 MB file's
/// one pass up to half its floor (11–15 GB/s against 25–44 for the larger files), so that the
/// 1k cases' aggregation ran "faster than the floor".
pub fn files_read_floor(paths: &[PathBuf], repeat: usize) -> Result<f64, String> {
    let mut floors = Vec::new();
    for _ in 0..repeat.max(1) {
        let maps = paths
            .iter()
            .map(|p| {
                let file = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
                // SAFETY: the bench wrote these files and nothing changes them while mapped.
                unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{}: {e}", p.display()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let t = Instant::now();
        let bytes: usize = maps
            .par_iter()
            .map(|map| {
                std::hint::black_box(sum_words(map));
                map.len()
            })
            .sum();
        floors.push(bytes as f64 / t.elapsed().as_secs_f64().max(1e-9));
        drop(maps);
    }
    Ok(median(floors))
}
