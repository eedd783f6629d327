//! The one matrix a trace is allowed: M[k,i] for i < k (query row k, key column i), f32, packed
//! lower-triangular. Causality makes everything on and above the diagonal zero, so storing only
//! the strict lower triangle halves the memory and the page faults of the largest allocation.
//! Every later step reads it row by row (contiguous), which is why the solves are written in
//! "pull" (forward) and "push" (backward) form rather than by columns.

#[derive(Clone, Debug)]
pub struct Matrix {
    pub n: usize,
    /// Row k holds M[k, 0..k] and starts at k(k-1)/2.
    pub data: Vec<f32>,
}

/// Where row k starts in packed storage: k(k-1)/2 (the shaders use the same formula).
#[inline]
pub fn row_offset(k: usize) -> usize {
    k * k.saturating_sub(1) / 2
}

use row_offset as offset;

impl Matrix {
    pub fn zeros(n: usize) -> Self {
        Matrix { n, data: vec![0.0; offset(n)] }
    }

    /// Bytes the matrix of an N-token trace takes.
    pub fn bytes_for(n: usize) -> usize {
        offset(n) * std::mem::size_of::<f32>()
    }

    /// M[k, 0..k]: the keys before query k.
    #[inline]
    pub fn row(&self, k: usize) -> &[f32] {
        &self.data[offset(k)..offset(k + 1)]
    }

    #[inline]
    pub fn row_mut(&mut self, k: usize) -> &mut [f32] {
        let (a, b) = (offset(k), offset(k + 1));
        &mut self.data[a..b]
    }

    /// All rows at once, for filling them in parallel.
    pub fn rows_mut(&mut self) -> Vec<&mut [f32]> {
        let mut rows = Vec::with_capacity(self.n);
        let mut rest: &mut [f32] = &mut self.data;
        for k in 0..self.n {
            let (row, tail) = std::mem::take(&mut rest).split_at_mut(k);
            rows.push(row);
            rest = tail;
        }
        rows
    }

    /// M[k,i]: what query k paid to key i, i.e. the edge weight W[i,k]; 0 unless i < k.
    #[inline]
    pub fn get(&self, k: usize, i: usize) -> f32 {
        if i < k { self.data[offset(k) + i] } else { 0.0 }
    }

    /// Sets M[k,i] for i < k (the only entries that exist).
    #[inline]
    pub fn set(&mut self, k: usize, i: usize, v: f32) {
        assert!(i < k && k < self.n, "M[{k},{i}] is not below the diagonal of a {0}×{0} matrix", self.n);
        self.data[offset(k) + i] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::Matrix;

    #[test]
    fn packed_rows_line_up() {
        let mut m = Matrix::zeros(5);
        m.set(4, 3, 1.0);
        m.set(1, 0, 2.0);
        assert_eq!(m.row(4), &[0.0, 0.0, 0.0, 1.0]);
        assert_eq!(m.row(1), &[2.0]);
        assert_eq!(m.row(0).len(), 0);
        assert_eq!((m.get(4, 3), m.get(3, 4), m.get(2, 2)), (1.0, 0.0, 0.0));
        assert_eq!(m.rows_mut().iter().map(|r| r.len()).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    }
}
