//! Flow knock-out on hand-made graphs (known losses) and on random traces (the one-solve closed
//! form against an explicit re-solve per token).

mod common;
use common::{matrix, random_attention, solve, spans};
use flowtracer::Params;
use flowtracer::flow::knockout::{knock_out, loss_per_token};
use flowtracer::flow::Matrix;
use flowtracer::synth::Rng;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Question {0} → bridge 1 → two parallel routes 2 and 3 (weights 0.75 and 0.25) → answer {4}.
fn bridge() -> (Matrix, flowtracer::Spans) {
    let m = matrix(5, &[(1, 0, 1.0), (2, 1, 1.0), (3, 1, 1.0), (4, 2, 0.75), (4, 3, 0.25)]);
    (m, spans((0, 1), (1, 5), (4, 5)))
}

#[test]
fn the_only_bridge_takes_all_answer_inflow_and_a_parallel_token_none() {
    let (m, s) = bridge();
    let p = Params::default();
    let base = solve(&m, s, &p);
    assert!(close(base.answer_inflow(), 1.0));

    let cut = knock_out(&m, &p, &base, &[1]).unwrap();
    assert_eq!(cut.answer_inflow, 0.0, "no route is left");
    assert!(close(cut.mass_lost, 1.0));
    assert!(close(cut.backbone_lost, 1.0));
    assert_eq!(cut.paths_lost, base.backbone.len());

    // Token 2 is one of two parallel routes: the conserved flow re-routes through 3 and the
    // answer still gets all of it, while 3/4 of the path mass ran through 2.
    let side = knock_out(&m, &p, &base, &[2]).unwrap();
    assert!(close(side.answer_inflow, 1.0), "{}", side.answer_inflow);
    assert!(close(side.mass_lost, 0.75), "{}", side.mass_lost);
    assert!(close(side.result.flow[3], 1.0), "everything re-routes through the other branch");
    let both = knock_out(&m, &p, &base, &[2, 3]).unwrap();
    assert_eq!(both.answer_inflow, 0.0);
    assert!(close(both.mass_lost, 1.0));

    // A token off every route loses nothing at all.
    let m2 = matrix(6, &[(1, 0, 1.0), (2, 1, 1.0), (3, 1, 1.0), (4, 2, 0.75), (4, 3, 0.25), (5, 0, 1.0)]);
    let s2 = spans((0, 1), (1, 6), (4, 5));
    let base2 = solve(&m2, s2, &p);
    let off = knock_out(&m2, &p, &base2, &[5]).unwrap();
    assert!(close(off.answer_inflow, 1.0) && off.mass_lost == 0.0 && off.backbone_lost == 0.0 && off.paths_lost == 0);

    // The per-token closed form gives the same losses.
    let per = loss_per_token(&m, &base.reach, s);
    assert!(close(per[1], 1.0) && close(per[2], 0.75) && close(per[3], 0.25), "{per:?}");
    assert!(close(per[0], 1.0), "the only question token carries every path");
    assert_eq!(per[4], 0.0, "answer tokens are not knocked out");
}

#[test]
fn answer_tokens_and_tokens_past_the_end_are_refused() {
    let (m, s) = bridge();
    let p = Params::default();
    let base = solve(&m, s, &p);
    assert!(knock_out(&m, &p, &base, &[4]).unwrap_err().contains("in the sink"));
    assert!(knock_out(&m, &p, &base, &[9]).unwrap_err().contains("has 5 tokens"));
}

#[test]
fn one_solve_gives_every_token_the_loss_of_its_own_re_solve() {
    let p = Params::default();
    for (n, seed) in [(12, 1), (40, 2), (150, 3), (300, 4)] {
        let mut rng = Rng::new(seed);
        let att = random_attention(n, &mut rng);
        let mut m = Matrix::zeros(n);
        for k in 1..n {
            for i in 0..k {
                m.set(k, i, att[k * n + i]);
            }
        }
        let q = 1 + n / 10;
        let s = spans((1, q), (q, n), (n - 3, n - 1));
        let base = solve(&m, s, &p);
        let per = loss_per_token(&m, &base.reach, s);
        for t in (0..n).filter(|&t| !s.answer.contains(t)) {
            let k = knock_out(&m, &p, &base, &[t]).unwrap();
            assert!((k.mass_lost - per[t]).abs() < 1e-9, "N = {n}, token {t}: re-solve {} vs closed form {}", k.mass_lost, per[t]);
        }
        // Every path starts at a question token, so the question's losses add up to at least 1
        // (more where a path passes through several of them).
        let from_question: f64 = s.question.range().map(|t| per[t]).sum();
        assert!(from_question >= 1.0 - 1e-9, "paths from the question: {from_question}");
    }
}
