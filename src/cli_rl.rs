//! The binary's RL commands: `train` (one run or a comparison), `warmstart`, `probe`. Argument
//! handling and terminal progress only; the work is in `flowtracer::rl`.

use flowtracer::backend::{self, Choice};
use flowtracer::flow::Cancel;
use flowtracer::params::Params;
use flowtracer::rl::{compare, said};
use flowtracer::rl::grpo::CreditMode;
use flowtracer::rl::model::{Config, Policy};
use flowtracer::rl::task::Task;
use flowtracer::rl::train::{self, Progress, TrainConfig};
use flowtracer::synth::Rng;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

static INTERRUPT: OnceLock<Cancel> = OnceLock::new();

/// The cancel flag Ctrl-C sets: the run finishes its step, keeps its files, and stops. A second
/// Ctrl-C kills at once.
pub fn interrupt() -> Cancel {
    let cancel = INTERRUPT.get_or_init(Cancel::default).clone();
    #[cfg(unix)]
    {
        extern "C" fn on_sigint(_: libc::c_int) {
            if let Some(c) = INTERRUPT.get() {
                c.cancel();
            }
            // SAFETY: restoring the default disposition is async-signal-safe.
            unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
        }
        // SAFETY: the handler only stores to an atomic and resets the disposition.
        unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    }
    cancel
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).expect("static template"));
    bar
}

/// Shows a run's progress on `bar`: the warm start, then each step's reward and accuracy.
fn show(bar: &ProgressBar, label: &str, p: Progress) {
    match p {
        Progress::WarmStart { step, max, accuracy } => {
            let acc = accuracy.map(|a| format!(", held-out {:.0}%", a * 100.0)).unwrap_or_default();
            bar.set_message(format!("{label}warm start {step}/{max}{acc}"));
        }
        Progress::Ready { accuracy } => bar.set_message(format!("{label}held-out {:.1}% at the start", accuracy * 100.0)),
        Progress::Step(m) => {
            bar.inc(1);
            let acc = m.heldout_accuracy.map(|a| format!(", held-out {:.1}%", a * 100.0)).unwrap_or_default();
            bar.set_message(format!("{label}step {} reward {:.2}{acc}", m.step, m.reward));
        }
    }
}

pub struct TrainArgs {
    pub cfg: TrainConfig,
    pub out: PathBuf,
    pub compare: Vec<CreditMode>,
    pub seeds: usize,
    pub target: f64,
}

pub fn run_train(a: TrainArgs) -> ExitCode {
    let cancel = interrupt();
    if a.compare.is_empty() {
        let bar = bar(a.cfg.steps as u64, "{bar:40} {pos}/{len} steps {elapsed_precise} {msg}");
        let result = train::train(&a.cfg, &a.out, &cancel, &mut |p| show(&bar, "", p));
        bar.finish_and_clear();
        return match result {
            Ok(()) if cancel.is_cancelled() => {
                eprintln!("flowtracer: stopped; `flowtracer train` with the same --out resumes from {}", a.out.display());
                ExitCode::from(130)
            }
            Ok(()) => {
                eprintln!("flowtracer: run in {} (metrics.jsonl, ckpt/, step_*/ traces)", a.out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flowtracer: train: {}", said(&e));
                ExitCode::from(1)
            }
        };
    }
    let seeds: Vec<u64> = (0..a.seeds as u64).map(|k| a.cfg.seed + k).collect();
    let runs = (a.compare.len() * seeds.len()) as u64;
    let bar = bar(runs * a.cfg.steps as u64, "{bar:40} {pos}/{len} steps, all runs {elapsed_precise} eta {eta} {msg}");
    let result = compare::compare(&a.cfg, &a.compare, &seeds, &a.out, &cancel, &mut |mode, seed, p| show(&bar, &format!("{} seed {seed}: ", mode.name()), p));
    bar.finish_and_clear();
    if let Err(e) = result {
        eprintln!("flowtracer: train --compare: {}", said(&e));
        return ExitCode::from(1);
    }
    if cancel.is_cancelled() {
        eprintln!("flowtracer: stopped; the same command resumes the comparison in {}", a.out.display());
        return ExitCode::from(130);
    }
    // Every evaluation when they fit in a table, else the start, the middle and the end.
    let every = a.cfg.eval_every.max(1);
    let mut at: std::collections::BTreeSet<usize> = (0..=a.cfg.steps).step_by(every).chain([a.cfg.steps]).collect();
    if at.len() > 6 {
        at = [0, a.cfg.steps / 2 / every * every, a.cfg.steps].into_iter().collect();
    }
    let at: Vec<usize> = at.into_iter().collect();
    match compare::table(&a.out, &a.compare, &seeds, &at, a.target) {
        Ok(t) => {
            println!(
                "{} · {} steps · {} seeds · held-out = {} problems, greedy · mean ± std over seeds\n\n{t}",
                a.cfg.task.name(),
                a.cfg.steps,
                seeds.len(),
                a.cfg.eval_size
            );
            match compare::write_table(&a.out, &t) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => failed(&e),
            }
        }
        Err(e) => failed(&e),
    }
}

pub fn run_warmstart(task: Task, target: f64, max_steps: usize, seed: u64, eval_size: usize, out: &Path, overwrite: bool) -> ExitCode {
    let cancel = interrupt();
    let policy = match Policy::new(Config::small()) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    let bar = bar(max_steps as u64, "{bar:40} {pos}/{len} supervised steps {elapsed_precise} {msg}");
    let mut rng = Rng::new(seed);
    let until = train::WarmTarget { target, max_steps, every: 100, eval_size };
    let result = train::warm_start(&policy, task, until, &mut rng, |step, loss, acc| {
        bar.set_position(step as u64);
        if let Some(a) = acc {
            bar.set_message(format!("loss {loss:.3}, held-out {:.1}%", a * 100.0));
            bar.suspend(|| eprintln!("step {step}: loss {loss:.4}, held-out {:.1}%", a * 100.0));
        }
        !cancel.is_cancelled()
    });
    bar.finish_and_clear();
    let (w, bytes) = match result.and_then(|w| Ok((w, policy.to_safetensors()?))) {
        Ok(done) => done,
        Err(e) => return failed(&e),
    };
    match crate::cli_values::write_out(out, &bytes, overwrite) {
        Ok(()) => {
            eprintln!("flowtracer: {} after {} supervised steps: {:.1}% held-out → {}", task.name(), w.steps, w.accuracy * 100.0, out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flowtracer: {e}");
            ExitCode::from(1)
        }
    }
}

pub struct ProbeArgs {
    pub task: Task,
    pub policy: Option<PathBuf>,
    pub problems: usize,
    pub fraction: f64,
    pub seed: u64,
    pub backend: Choice,
    pub params: Params,
}

impl ProbeArgs {
    fn spec(&self) -> flowtracer::rl::probe::ProbeSpec {
        flowtracer::rl::probe::ProbeSpec { task: self.task, problems: self.problems, fraction: self.fraction, seed: self.seed }
    }
}

/// The policy a probe runs: `--policy`, else the task's shipped checkpoint.
fn probe_policy(task: Task, path: &Option<PathBuf>) -> flowtracer::rl::Result<Policy> {
    let mut policy = Policy::new(Config::small())?;
    match (path, flowtracer::rl::shipped::checkpoint(task)) {
        (Some(p), _) => policy.load(p)?,
        (None, Some(bytes)) => policy.load_bytes(bytes)?,
        (None, None) => return Err(flowtracer::rl::Error::msg(format!("no checkpoint ships for {}; pass --policy RUN/ckpt/step_N.safetensors", task.name()))),
    }
    Ok(policy)
}

pub fn run_probe(a: ProbeArgs) -> ExitCode {
    let cancel = interrupt();
    let policy = match probe_policy(a.task, &a.policy) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    let backend = match backend::select(a.backend) {
        Ok(b) => b,
        Err(e) => return fail(e.to_string()),
    };
    let bar = bar(a.problems as u64, "{bar:40} {pos}/{len} problems {elapsed_precise}");
    let result = flowtracer::rl::probe::probe(&policy, a.spec(), backend.as_ref(), &a.params, &cancel, &mut |done, _| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            println!("{}", r.table());
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("flowtracer: {e}");
    ExitCode::from(1)
}

/// [`fail`] with an RL error, said without the backtrace candle may carry in it.
fn failed(e: &flowtracer::rl::Error) -> ExitCode {
    fail(said(e))
}

pub struct TokenProbeArgs {
    pub task: Task,
    pub policy: Option<PathBuf>,
    pub problems: usize,
    pub seed: u64,
    pub params: Params,
    pub table: bool,
    pub out: Option<PathBuf>,
}

/// `probe --per-token`: every reasoning token hidden alone; the traces with their causal effect
/// (`--out`) and the score table (`--table`).
pub fn run_token_probe(a: TokenProbeArgs) -> ExitCode {
    use flowtracer::rl::{causal, fidelity};
    if let Some(Err(e)) = a.out.as_deref().map(causal::check_probe_folder) {
        return fail(format!("--out {}", said(&e)));
    }
    let cancel = interrupt();
    let policy = match probe_policy(a.task, &a.policy) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    let bar = bar(a.problems as u64, "{bar:40} {pos}/{len} problems {elapsed_precise} eta {eta}");
    let probes = causal::probe_tokens(&policy, a.task, a.problems, a.seed, &cancel, &mut |done, _| bar.set_position(done as u64));
    bar.finish_and_clear();
    let probes = match probes {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    let (layers, heads) = (policy.cfg.layers, policy.cfg.heads);
    if let Some(dir) = &a.out {
        if let Err(e) = causal::write_probes(dir, &probes, &policy, a.task) {
            return failed(&e);
        }
        eprintln!("flowtracer: {} traces with causal_effect in {}", probes.len(), dir.display());
    }
    let sets = match fidelity::score_sets(&probes, layers, heads, a.task, &a.params, a.seed) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let rows = fidelity::rows(&probes, &sets, a.seed);
    let table = fidelity::table(a.task.name(), &probes, &rows);
    if a.table {
        println!("{table}");
    } else {
        println!("{}", table.lines().next().unwrap_or_default());
    }
    if cancel.is_cancelled() {
        eprintln!("flowtracer: stopped; the table covers the problems probed so far");
        return ExitCode::from(130);
    }
    ExitCode::SUCCESS
}
