//! M on the device, uploaded once per trace for the solves. Whole 64-row blocks of the packed
//! triangle go into one buffer while it stays within the adapter's binding limit, and the next
//! block starts the next buffer: every dispatch reads only the rows of its own block, so it binds
//! the one buffer that holds them, and no matrix is refused for size alone. Blocks sit on a global
//! grid (rows 64j..64j+64), so the backward and the forward sweeps cut the same blocks.

use super::Gpu;
use crate::flow::Matrix;
use crate::flow::matrix::row_offset;
use std::ops::Range;
use wgpu::util::DeviceExt;

pub use crate::grid::{BLOCK, blocks_down, blocks_up};

pub struct DeviceMatrix {
    pub n: usize,
    /// (rows held, buffer); rows are whole grid blocks except at the matrix's end.
    chunks: Vec<(Range<usize>, wgpu::Buffer)>,
}

impl DeviceMatrix {
    /// The buffer holding `rows` (within one grid block) and the packed index of its first entry.
    pub fn holding(&self, rows: &Range<usize>) -> (&wgpu::Buffer, u32) {
        let (r, buf) = self.chunks.iter().find(|(r, _)| r.start <= rows.start && rows.end <= r.end).expect("a block lies within one chunk");
        (buf, row_offset(r.start) as u32)
    }

    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Each buffer with the rows it holds.
    pub fn buffers(&self) -> impl Iterator<Item = (&Range<usize>, &wgpu::Buffer)> {
        self.chunks.iter().map(|(r, b)| (r, b))
    }
}

impl Gpu {
    /// Uploads `m` in buffers of at most the adapter's binding size.
    pub fn upload(&self, m: &Matrix) -> Result<DeviceMatrix, String> {
        self.upload_within(m, self.max_binding())
    }

    /// Uploads `m` in buffers of at most `limit` bytes (tests force small ones).
    pub fn upload_within(&self, m: &Matrix, limit: u64) -> Result<DeviceMatrix, String> {
        let chunks = chunk_rows(m.n, limit)?
            .into_iter()
            .map(|rows| {
                let data = &m.data[row_offset(rows.start)..row_offset(rows.end)];
                // A binding may not be empty (rows 0 and 1 hold no entries).
                let contents: &[u8] = if data.is_empty() { &[0; 4] } else { bytemuck::cast_slice(data) };
                let buf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("M"), contents, usage: USAGE });
                (rows, buf)
            })
            .collect();
        Ok(DeviceMatrix { n: m.n, chunks })
    }

    /// An N-token matrix on the device, its contents for a shader to write (the aggregation).
    pub fn allocate_within(&self, n: usize, limit: u64) -> Result<DeviceMatrix, String> {
        let chunks = chunk_rows(n, limit)?
            .into_iter()
            .map(|rows| {
                let size = ((row_offset(rows.end) - row_offset(rows.start)).max(1) * 4) as u64;
                let buf = self.device.create_buffer(&wgpu::BufferDescriptor { label: Some("M"), size, usage: USAGE, mapped_at_creation: false });
                (rows, buf)
            })
            .collect();
        Ok(DeviceMatrix { n, chunks })
    }

    /// Copies the device matrix into a host one (the CPU's steps and the app read it by rows).
    /// The chunks cover every entry, so the host matrix may be a dropped one's storage: fresh
    /// memory would cost a page fault and the kernel's zeroing per 4 KiB under the copy.
    pub fn download(&self, dm: &DeviceMatrix) -> Result<Matrix, String> {
        let mut m = Matrix::for_overwrite(dm.n);
        for (rows, buf) in &dm.chunks {
            let (a, b) = (row_offset(rows.start), row_offset(rows.end));
            if b > a {
                self.read_back_into(buf, &mut m.data[a..b])?;
            }
        }
        Ok(m)
    }
}

/// Read by the shaders, written by the aggregation, read back once.
const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST).union(wgpu::BufferUsages::COPY_SRC);

/// Rows of each buffer: whole grid blocks while the buffer stays within `limit` bytes.
fn chunk_rows(n: usize, limit: u64) -> Result<Vec<Range<usize>>, String> {
    let bytes = |rows: &Range<usize>| ((row_offset(rows.end) - row_offset(rows.start)) * 4) as u64;
    let mut chunks: Vec<Range<usize>> = Vec::new();
    for block in blocks_up(0..n) {
        if bytes(&block) > limit {
            return Err(format!("64 rows of the matrix ({} MiB) are over the adapter's binding limit", bytes(&block) >> 20));
        }
        match chunks.last_mut() {
            Some(c) if bytes(&(c.start..block.end)) <= limit => c.end = block.end,
            _ => chunks.push(block),
        }
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_cut_the_same_grid_blocks() {
        assert_eq!(blocks_down(130), vec![128..130, 64..128, 0..64]);
        assert_eq!(blocks_down(64), vec![0..64]);
        assert_eq!(blocks_up(3..130), vec![3..64, 64..128, 128..130]);
        assert_eq!(blocks_up(64..64), Vec::<Range<usize>>::new());
    }
}
