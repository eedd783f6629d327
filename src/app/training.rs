//! The Train panel's data model: a fine-tune of several credit modes at once, each on its own
//! thread through the same `rl::train::train` the CLI runs, reporting back over a channel. The
//! view only reads this and calls `start` / `cancel`.

use crate::flow::Cancel;
use crate::rl::grpo::CreditMode;
use crate::rl::train::{Progress, TrainConfig, train};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};

pub const MODES: [CreditMode; 5] = [CreditMode::Uniform, CreditMode::Flow, CreditMode::Random, CreditMode::Entropy, CreditMode::Attention];

/// What the user set up: the run configuration shared by every mode, and which modes.
pub struct TrainForm {
    pub cfg: TrainConfig,
    pub modes: [bool; MODES.len()],
    /// Runs go to `root/<mode>-s<seed>` (the layout of `flowtracer train --compare`).
    pub root: PathBuf,
}

impl Default for TrainForm {
    fn default() -> Self {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        TrainForm {
            cfg: TrainConfig::new(crate::rl::task::Task::Addition, CreditMode::Flow, 40, 0),
            modes: [true, true, false, false, false],
            // Under the home folder: an app started from a launcher may have `/` as its cwd.
            root: std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join("flowtracer-runs").join(format!("run-{stamp}")),
        }
    }
}

/// One mode's run as the panel shows it.
pub struct ModeRun {
    pub mode: CreditMode,
    pub dir: PathBuf,
    pub steps: usize,
    pub phase: String,
    pub reward: Vec<[f64; 2]>,
    pub accuracy: Vec<[f64; 2]>,
    pub traces: Vec<PathBuf>,
    pub finished: bool,
    pub error: Option<String>,
}

enum Event {
    Phase(String),
    Accuracy(usize, f64),
    Step { step: usize, reward: f64, accuracy: Option<f64>, traces_written: bool },
    Finished(Result<(), String>),
}

pub struct Training {
    pub runs: Vec<ModeRun>,
    cancel: Cancel,
    events: Receiver<(usize, Event)>,
}

impl Training {
    /// Starts one background run per chosen mode; `wake` asks the UI for a frame.
    pub fn start(form: &TrainForm, wake: impl Fn() + Send + Clone + 'static) -> Training {
        let (tx, events) = channel();
        let cancel = Cancel::default();
        let modes: Vec<CreditMode> = MODES.iter().zip(form.modes).filter(|(_, on)| *on).map(|(m, _)| *m).collect();
        let runs = modes
            .iter()
            .enumerate()
            .map(|(i, &mode)| {
                let mut cfg = form.cfg.clone();
                cfg.credit_mode = mode;
                let dir = crate::rl::compare::run_dir(&form.root, mode, cfg.seed);
                spawn(i, cfg, dir.clone(), cancel.clone(), tx.clone(), wake.clone());
                ModeRun { mode, dir, steps: form.cfg.steps, phase: "starting".into(), reward: vec![], accuracy: vec![], traces: vec![], finished: false, error: None }
            })
            .collect();
        Training { runs, cancel, events }
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn running(&self) -> bool {
        self.runs.iter().any(|r| !r.finished)
    }

    /// Takes in what the runs reported since the last frame.
    pub fn poll(&mut self) {
        while let Ok((i, e)) = self.events.try_recv() {
            let run = &mut self.runs[i];
            match e {
                Event::Phase(p) => run.phase = p,
                Event::Accuracy(step, a) => run.accuracy.push([step as f64, a]),
                Event::Step { step, reward, accuracy, traces_written } => {
                    run.phase = format!("step {step}/{}", run.steps);
                    run.reward.push([step as f64, reward]);
                    if let Some(a) = accuracy {
                        run.accuracy.push([step as f64, a]);
                    }
                    if traces_written {
                        run.traces = traces_in(&run.dir);
                    }
                }
                Event::Finished(result) => {
                    run.finished = true;
                    run.traces = traces_in(&run.dir);
                    match result {
                        Ok(()) if self.cancel.is_cancelled() => run.phase = "cancelled (resumable)".into(),
                        Ok(()) => run.phase = "done".into(),
                        Err(e) => {
                            run.phase = "failed".into();
                            run.error = Some(e);
                        }
                    }
                }
            }
        }
    }
}

fn spawn(i: usize, cfg: TrainConfig, dir: PathBuf, cancel: Cancel, tx: Sender<(usize, Event)>, wake: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        let send = |e: Event| {
            let _ = tx.send((i, e));
            wake();
        };
        let every = cfg.checkpoint_every.max(1);
        let steps = cfg.steps;
        let result = train(&cfg, &dir, &cancel, &mut |p| match p {
            Progress::WarmStart { step, max, accuracy } => {
                let acc = accuracy.map(|a| format!(", held-out {:.0}%", a * 100.0)).unwrap_or_default();
                send(Event::Phase(format!("warm start {step}/{max}{acc}")));
            }
            Progress::Ready { accuracy } => {
                send(Event::Accuracy(0, accuracy));
                send(Event::Phase(format!("step 0/{steps}")));
            }
            Progress::Step(m) => send(Event::Step {
                step: m.step,
                reward: m.reward,
                accuracy: m.heldout_accuracy,
                traces_written: m.step % every == 0 || m.step == steps,
            }),
        });
        send(Event::Finished(result.map_err(|e| crate::rl::said(&e))));
    });
}

/// The trace files a run has written so far, oldest step first.
pub fn traces_in(dir: &Path) -> Vec<PathBuf> {
    crate::trace::run::discover(dir).map(|r| r.traces).unwrap_or_default()
}
