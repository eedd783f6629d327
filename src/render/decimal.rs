//! Numbers written exactly as `format!("{v}")`, `format!("{v:.N}")` and `format!("{v:.Ne}")`
//! write them, for the CSV's and the report's thousands of per-token figures.
//!
//! `{v}` is the shortest decimal that reads back as `v`, laid out without an exponent: Ryū finds
//! the same shortest digits (the closest of them to `v`) several times faster, and they are laid
//! out here as std lays them out.
//! std gets each of those digits from the exact binary
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
    integer(out, n / scale, 0);
    if precision > 0 {
        out.push('.');
        integer(out, n % scale, precision);
    }
}

/// `n` as `format!("{n:0width$}")` writes it (`width` at most 20): through std's formatter the
/// whole parts, fractions and exponents of a report section's figures were a quarter of writing
/// it (3.1 ms against 2.3 at 8k tokens).
pub fn integer(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let at = at.min(digits.len() - width.min(digits.len()));
    out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
}

/// `v` as `format!("{v}")` writes it.
pub fn shortest(out: &mut String, v: f64) {
    // From 2⁵³ a value's shortest digits can end in zeros in place of its own (and a tie between
    // two of them be broken otherwise): std writes those.
    if !(v.is_finite() && v.abs() < (1u64 << 53) as f64) {
        let _ = write!(out, "{v}");
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let written = buffer.format_finite(v.abs());
    let (mantissa, exponent) = written.split_once('e').unwrap_or((written, "0"));
    let exponent: i32 = exponent.parse().expect("ryu writes a whole exponent");
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // v = 0.DIGITS × 10^point
    let mut point = int.len() as i32 + exponent;
    let mut all = [0u8; 32];
    let n = int.len() + frac.len();
    all[..int.len()].copy_from_slice(int.as_bytes());
    all[int.len()..n].copy_from_slice(frac.as_bytes());
    let leading = all[..n].iter().take_while(|&&b| b == b'0').count();
    point -= leading as i32;
    let digits = &all[leading..n];
    let digits = std::str::from_utf8(&digits[..digits.iter().rposition(|&b| b != b'0').map_or(0, |i| i + 1)]).expect("ASCII digits");
    // Two shortest decimals as near to `v` as each other (Ryū takes the even one, std the one
    // above): `v` lies halfway between two numbers of `places` decimals, so it has exactly
    // `places + 1` binary ones. Those are left to std.
    let places = (digits.len() as i32 - point).max(0);
    if places > 0 && fractional_bits(v) == places + 1 {
        let _ = write!(out, "{v}");
        return;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    let zeros = |out: &mut String, count: i32| (0..count).for_each(|_| out.push('0'));
    if digits.is_empty() {
        out.push('0');
    } else if point <= 0 {
        out.push_str("0.");
        zeros(out, -point);
        out.push_str(digits);
    } else if point as usize >= digits.len() {
        out.push_str(digits);
        zeros(out, point - digits.len() as i32);
    } else {
        let (a, b) = digits.split_at(point as usize);
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    }
}

/// How many binary digits after the point a finite `v` has.
fn fractional_bits(v: f64) -> i32 {
    let bits = v.to_bits();
    let (exponent, fraction) = (((bits >> 52) & 0x7ff) as i32, bits & ((1 << 52) - 1));
    // v = mantissa · 2^power
    let (mantissa, power) = if exponent == 0 { (fraction, -1074) } else { (fraction | 1 << 52, exponent - 1075) };
    if mantissa == 0 {
        return 0;
    }
    (-(power + mantissa.trailing_zeros() as i32)).max(0)
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
            out.push_str(if e < 0 { "e-" } else { "e" });
            integer(out, e.unsigned_abs() as u64, 0);
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
        let mut rng = crate::flow::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut values = vec![0.0, -0.0, 0.5, 1.5, 2.5, 0.125, 0.00005, 0.00015, 1e-300, 5e-324, 1e300, f64::MAX, f64::NAN, f64::INFINITY, -f64::INFINITY, 999.95, 9.9995, 0.99995, 1e9, 123456789.12345];
        for p in -30..30 {
            let x = 10f64.powi(p);
            values.extend([x, f64::from_bits(x.to_bits() + 1), f64::from_bits(x.to_bits() - 1), 9.9995 * x, 1.0005 * x]);
        }
        for _ in 0..60_000 {
            let seed = rng.next_u64();
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

    /// The shortest digits, laid out as std lays them out, on values of every magnitude, their
    /// neighbours, integers, zeros of both signs and arbitrary bit patterns.
    #[test]
    fn whole_numbers_are_written_as_std_writes_them() {
        let mut s = String::new();
        for n in [0, 1, 9, 10, 99, 100, 4096, 12_345_678, u64::MAX] {
            for width in [0, 1, 3, 8, 20] {
                s.clear();
                integer(&mut s, n, width);
                assert_eq!(s, format!("{n:0width$}"));
            }
        }
    }

    #[test]
    fn shortest_numbers_are_written_as_std_writes_them() {
        let mut rng = crate::flow::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let mut values = vec![0.0, -0.0, 1.0, -1.0, 0.1, 0.3, 1e21, 1e22, 1e23, 5e-324, f64::MAX, f64::MIN_POSITIVE, f64::NAN, f64::INFINITY, -f64::INFINITY, 123456789012345680.0, 0.000001, 1e-7, 4503599627370495.5];
        // Halfway between two shortest decimals (…797.2 and …797.3): std takes the upper one.
        values.extend([-(4 * 1_149_636_667_324_797_i64 + 1) as f64 / 4.0, (4 * 1_149_636_667_324_797_i64 + 3) as f64 / 4.0]);
        for p in -320..309 {
            let x = 10f64.powi(p);
            values.extend([x, f64::from_bits(x.to_bits() + 1), f64::from_bits(x.to_bits().saturating_sub(1)), 1.5 * x]);
        }
        for _ in 0..200_000 {
            let seed = rng.next_u64();
            let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
            values.extend([unit, unit * 10f64.powi((seed % 60) as i32 - 40), -unit * 1e4, (unit * 1e6).round(), f64::from_bits(seed)]);
        }
        let mut ours = String::new();
        for v in values {
            ours.clear();
            shortest(&mut ours, v);
            assert_eq!(ours, format!("{v}"), "{v:e}");
        }
    }
}
