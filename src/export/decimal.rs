//! Numbers written exactly as `format!("{v:.N}")` and `format!("{v:.Ne}")` write them, for the
//! report's thousands of per-token figures. std gets each of those digits from the exact binary
//! value (Grisu's exact mode, and big-number Dragon when that gives up), which with the
//! allocations around it was most of writing a 4k-token trace's report section.
//!
//! Here the value is scaled by a power of ten that f64 holds exactly, so the scaled value is
//! off the exact one by half an ulp at most, far less than 10⁻⁶ while it stays under 10⁹.
//! Rounding it to a whole number then gives std's digits unless the exact value lies within that
//! of a half (a tie std rounds by the exact digits): those, and everything out of range, are
//! handed to std itself.

use std::fmt::Write;

const POW10: [f64; 23] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
/// The most digits after the point written here; more go to std.
const MAX_PRECISION: usize = 8;

/// `round(t)` where that is std's rounding of the exact value `t` stands for: `t` under 10⁹ and
/// not within 10⁻⁶ of a half.
fn whole(t: f64) -> Option<u64> {
    (t < 1e9 && ((t - t.floor()) - 0.5).abs() > 1e-6).then(|| t.round() as u64)
}

/// `n` as `int.frac` with `precision` digits after the point.
fn digits(out: &mut String, negative: bool, n: u64, precision: usize) {
    if negative {
        out.push('-');
    }
    let scale = POW10[precision] as u64;
    let _ = write!(out, "{}", n / scale);
    if precision > 0 {
        let _ = write!(out, ".{:0precision$}", n % scale);
    }
}

/// `v` as `format!("{v:.precision$}")` writes it.
pub fn fixed(out: &mut String, v: f64, precision: usize) {
    let n = (v.is_finite() && precision <= MAX_PRECISION).then(|| whole(v.abs() * POW10[precision])).flatten();
    match n {
        Some(n) => digits(out, v.is_sign_negative(), n, precision),
        None => {
            let _ = write!(out, "{v:.precision$}");
        }
    }
}

/// `v` as `format!("{v:.precision$e}")` writes it.
pub fn scientific(out: &mut String, v: f64, precision: usize) {
    match mantissa(v.abs(), precision) {
        Some((n, e)) => {
            digits(out, v.is_sign_negative(), n, precision);
            let _ = write!(out, "e{e}");
        }
        None => {
            let _ = write!(out, "{v:.precision$e}");
        }
    }
}

/// The `precision + 1` digits of `a`'s mantissa as a whole number, and its exponent.
fn mantissa(a: f64, precision: usize) -> Option<(u64, i32)> {
    if !(a.is_finite() && a > 0.0 && precision <= MAX_PRECISION) {
        return None;
    }
    let (low, high) = (POW10[precision], POW10[precision + 1]);
    // a · 10^(precision − e), one rounding: the power is exact.
    let scaled = |e: i32| -> Option<f64> {
        let k = precision as i32 - e;
        match k.unsigned_abs() as usize {
            p if p >= POW10.len() => None,
            p if k >= 0 => Some(a * POW10[p]),
            p => Some(a / POW10[p]),
        }
    };
    let mut e = a.log10().floor() as i32;
    let mut t = scaled(e)?;
    // log10 can be a step off next to a power of ten.
    if t < low {
        e -= 1;
        t = scaled(e)?;
    } else if t >= high {
        e += 1;
        t = scaled(e)?;
    }
    if !(low..high).contains(&t) {
        return None;
    }
    let n = whole(t)?;
    Some(if n as f64 == high { (low as u64, e + 1) } else { (n, e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against std on values of every magnitude the report writes and beyond: ties, values next
    /// to them, powers of ten and the steps beside them, zeros of both signs, tiny and huge ones.
    #[test]
    fn numbers_are_written_as_std_writes_them() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![0.0, -0.0, 0.5, 1.5, 2.5, 0.125, 0.00005, 0.00015, 1e-300, 5e-324, 1e300, f64::MAX, f64::NAN, f64::INFINITY, -f64::INFINITY, 999.95, 9.9995, 0.99995, 1e9, 123456789.12345];
        for p in -30..30 {
            let x = 10f64.powi(p);
            values.extend([x, f64::from_bits(x.to_bits() + 1), f64::from_bits(x.to_bits() - 1), 9.9995 * x, 1.0005 * x]);
        }
        for _ in 0..60_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
            let magnitude = 10f64.powi((seed % 40) as i32 - 25);
            let v = unit * magnitude;
            values.extend([v, -v, (v * 1e4).round() / 1e4 + 0.00005, (unit * 2e4).round() / 2e4, f64::from_bits(seed)]);
        }
        let (mut ours, mut fast) = (String::new(), 0usize);
        for v in values {
            for precision in [0, 1, 2, 3, 4, 8, 9] {
                // (std writes every digit of a huge value: a few hundred of them, slowly.)
                if v.abs() < 1e30 || !v.is_finite() {
                    ours.clear();
                    fixed(&mut ours, v, precision);
                    assert_eq!(ours, format!("{v:.precision$}"), "{v:e} to {precision} places");
                }
                ours.clear();
                scientific(&mut ours, v, precision);
                assert_eq!(ours, format!("{v:.precision$e}"), "{v:e} to {precision} places, scientific");
                fast += mantissa(v.abs(), precision).is_some() as usize;
            }
        }
        assert!(fast > 1_000_000, "only {fast} values took the fast way");
    }
}
