//! Step 6, throughput: τ(k) = f(k) + Σ_{j>k} φ(k,j), inflow plus outflow. Conservation makes the
//! outflow of a conserving token equal to its inflow, so τ = 2·f there and f on the answer; the
//! tests check this against the explicit sum over φ.

use super::conserve::conserves;
use crate::span::Span;

pub fn throughput(f: &[f64], h: &[f64], answer: Span) -> Vec<f64> {
    (0..f.len()).map(|k| if conserves(k, h, answer) { 2.0 * f[k] } else { f[k] }).collect()
}
