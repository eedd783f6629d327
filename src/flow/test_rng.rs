//! The seeded xorshift (and sparse matrix) the solves' bit-identity tests fill their matrices from: the same numbers
//! on every machine and run, with no dependency for it.

pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An `n`-token matrix sparse as attention is: about one entry in `one_in` non-zero, spread over
/// [0, 1/k) in row k, the rest zero. The generator comes back for the test's other numbers.
pub fn sparse_matrix(n: usize, seed: u64, one_in: u64) -> (super::matrix::Matrix, XorShift) {
    let mut m = super::matrix::Matrix::zeros(n);
    let mut rng = XorShift(seed);
    for k in 1..n {
        for w in m.row_mut(k) {
            let x = rng.next_u64();
            *w = if x.is_multiple_of(one_in) { (x >> 40) as f32 / (1u64 << 24) as f32 / k as f32 } else { 0.0 };
        }
    }
    (m, rng)
}
