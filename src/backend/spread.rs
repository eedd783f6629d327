//! A batch of short traces spread one trace a core. The CPU pipeline's steps split their own
//! work across the pool (rows, tokens, paths), which a lone trace needs; in a batch with traces
//! enough to keep every core busy the splits buy nothing, and now and then they cost the batch
//! most of a core. Each trace run whole on one thread, in a pool of one so that its steps' splits
//! run in order there: in 40 runs of the bench's 64-trace batch at N = 1024 on two cores,
//! alternated with the nested batch, the nested one ran at 1.10–1.37× its own one-thread rate in
//! six (1 419–1 768 traces/s), the spread one never below 1.57×; their means 2 073 and 2 136
//! traces/s. Handing the traces out one at a time inside the shared pool gained nothing.

use crate::flow::Plan;
use crate::flow::sweep::PAIRED_FROM;
use crate::trace::Trace;
use crate::per_process::PerProcess;
use std::sync::{Arc, Mutex, PoisonError};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `run` over every planned trace, one trace at a time on each of the pool's cores, the results
/// in the batch's order; None where the batch is better run nested: a pool of one thread, fewer
/// than two traces a core (the steps' own splits even out what the cores get), or a trace long
/// enough that its solves share two cores ([`PAIRED_FROM`]).
pub(super) fn one_trace_a_core<R: Send>(batch: &[(&Trace, &Plan)], run: impl Fn(&Trace, &Plan) -> R + Sync) -> Option<Vec<R>> {
    let cores = rayon::current_num_threads();
    if cores < 2 || batch.len() < 2 * cores || batch.iter().any(|(t, _)| t.n() >= PAIRED_FROM) {
        return None;
    }
    let pools = pools(cores)?;
    let next = AtomicUsize::new(0);
    let done: Vec<Mutex<Option<R>>> = batch.iter().map(|_| Mutex::new(None)).collect();
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(trace, plan)) = batch.get(i) else { break };
            let r = run(trace, plan);
            *done[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        }
    };
    // A thread a core, each in its own pool while the batch lasts: the caller (often one of the
    // shared pool's threads) waits without taking a core from them. Where no thread can be
    // started, the caller runs the batch itself.
    std::thread::scope(|s| {
        let work = &work;
        let started = pools.iter().filter(|&pool| std::thread::Builder::new().spawn_scoped(s, move || pool.install(work)).is_ok()).count();
        if started == 0 {
            work();
        }
    });
    Some(done.into_iter().map(|d| d.into_inner().unwrap_or_else(PoisonError::into_inner).expect("every trace ran")).collect())
}

/// `cores` pools of one thread, made as batches first ask for them and kept (their threads
/// sleep between batches), and made again in a forked child ([`PerProcess`]); None where one
/// could not be made.
fn pools(cores: usize) -> Option<Vec<Arc<rayon::ThreadPool>>> {
    static POOLS: PerProcess<Vec<Arc<rayon::ThreadPool>>> = PerProcess::new();
    POOLS.with(|pools| {
        while pools.len() < cores {
            let i = pools.len();
            pools.push(Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).thread_name(move |_| format!("flowtracer-trace-{i}")).build().ok()?));
        }
        Some(pools[..cores].to_vec())
    })
}

#[cfg(test)]
mod tests {
    use crate::backend::Backend;
    use crate::flow::{Cancel, Cpu, Plan};
    use crate::span::Span;
    use crate::synth::{SynthSpec, synth_trace};
    use crate::trace::{AttentionInput, Dtype, Trace, TraceBuilder};
    use std::path::Path;

    /// A batch spread one trace a core answers what each trace run alone answers, bit for bit and
    /// in the batch's order, with a bad trace's error in its place and the others unharmed; a
    /// batch of fewer than two traces a core is left to run nested.
    #[test]
    fn a_spread_batch_answers_as_each_trace_alone() {
        let traces: Vec<Trace> = (0..7)
            .map(|i| {
                let spec = SynthSpec { seed: 40 + i as u64, target_tokens: 100 + 30 * i, layers: 2, heads: 2, dtype: Dtype::F16, rank: 4, no_answer: false };
                match i {
                    3 => non_causal(60),
                    _ => Trace::from_bytes(synth_trace(&spec).to_bytes(), Path::new(&format!("t{i}.safetensors"))).unwrap(),
                }
            })
            .collect();
        let params = crate::Params::default();
        let plans: Vec<Plan> = traces.iter().map(|t| Plan::for_trace(t, &params).unwrap()).collect();
        let batch: Vec<(&Trace, &Plan)> = traces.iter().zip(&plans).collect();
        let alone: Vec<_> = batch.iter().map(|&(t, p)| Cpu.execute(&[(t, p)], &Cancel::default()).pop().unwrap()).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let ran_on = std::sync::Mutex::new(Vec::new());
        let spread = pool
            .install(|| {
                super::one_trace_a_core(&batch, |t, p| {
                    ran_on.lock().unwrap().push((rayon::current_num_threads(), std::thread::current().name().map(String::from)));
                    Cpu.execute(&[(t, p)], &Cancel::default()).pop().unwrap()
                })
            })
            .expect("seven traces on two cores are spread");
        assert_eq!(spread.len(), alone.len());
        for (i, (s, a)) in spread.iter().zip(&alone).enumerate() {
            match (s, a) {
                (Ok((s, sm)), Ok((a, am))) => {
                    assert_eq!((&s.flow, &s.reach, &s.credit, &s.backbone), (&a.flow, &a.reach, &a.credit, &a.backbone), "trace {i}");
                    assert_eq!(sm.data, am.data, "trace {i}'s matrix");
                }
                (Err(s), Err(a)) => assert_eq!((i, s.to_string()), (3, a.to_string())),
                _ => panic!("trace {i}: {:?} against {:?}", s.as_ref().err(), a.as_ref().err()),
            }
        }
        // Each trace on one thread of a pool of its own, its steps' splits in order there.
        let ran_on = ran_on.into_inner().unwrap();
        assert_eq!(ran_on.len(), 7);
        assert!(ran_on.iter().all(|(threads, name)| *threads == 1 && name.as_deref().is_some_and(|n| n.starts_with("flowtracer-trace-"))), "{ran_on:?}");
        assert!(pool.install(|| super::one_trace_a_core(&batch[..3], |_, _| ())).is_none(), "three traces on two cores run nested");
    }

    /// An `[N,N]` F32 trace with weight above the diagonal: its run fails, the plan does not.
    fn non_causal(n: usize) -> Trace {
        let mut values = vec![0f32; n * n];
        for k in 0..n {
            values[k * n..k * n + k + 1].fill(1.0 / (k + 1) as f32);
        }
        values[5 * n + 9] = 0.25;
        let tokens = (0..n).map(|i| format!("t{i}")).collect();
        let b = TraceBuilder::new(tokens, Span::new(0, 4), Span::new(4, n), Span::new(n - 3, n), AttentionInput { shape: vec![n, n], values, dtype: Dtype::F32 });
        Trace::from_bytes(b.to_bytes(), Path::new("non_causal.safetensors")).unwrap()
    }
}
