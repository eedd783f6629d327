//! The one N×N matrix a trace is allowed: M[k,i], query row k, key column i, f32.
//! Every later step reads it row by row (contiguous), which is why the solves are written in
//! "pull" (forward) and "push" (backward) form rather than by columns.

#[derive(Clone, Debug)]
pub struct Matrix {
    pub n: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn zeros(n: usize) -> Self {
        Matrix { n, data: vec![0.0; n * n] }
    }

    pub fn from_rows(rows: &[Vec<f32>]) -> Self {
        let n = rows.len();
        let mut m = Matrix::zeros(n);
        for (k, r) in rows.iter().enumerate() {
            assert_eq!(r.len(), n, "row {k} has {} entries, not {n}", r.len());
            m.row_mut(k).copy_from_slice(r);
        }
        m
    }

    #[inline]
    pub fn row(&self, k: usize) -> &[f32] {
        &self.data[k * self.n..(k + 1) * self.n]
    }

    #[inline]
    pub fn row_mut(&mut self, k: usize) -> &mut [f32] {
        let n = self.n;
        &mut self.data[k * n..(k + 1) * n]
    }

    /// M[k,i]: what query k paid to key i, i.e. the edge weight W[i,k].
    #[inline]
    pub fn get(&self, k: usize, i: usize) -> f32 {
        self.data[k * self.n + i]
    }

    #[inline]
    pub fn set(&mut self, k: usize, i: usize, v: f32) {
        self.data[k * self.n + i] = v;
    }
}
